"""Training checkpoints: a run's whole state in safetensors + JSON, written atomically; the last two kept.

    OUTPUT/checkpoints/step-00000420/tensors.safetensors   weights, optimizer moments, best weights, torch RNG
    OUTPUT/checkpoints/step-00000420/state.json            step, place in the epoch, history, data-order RNG,
                                                           schedules, settings, data fingerprint, tensors' sha256

A checkpoint folder is written under a temporary name, fsynced and renamed, so it is either whole or
absent. A torn or corrupt one (its tensors no longer match the sha256 in state.json, or state.json does
not parse) is skipped and the one before it is used. No pickle: nothing here can run code when loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from finebert.model_folder import fsync_folder, writing

FOLDER = "checkpoints"
KEEP = 2  # checkpoints kept; older ones are deleted once a newer one is complete


def save(output: Path, step: int, tensors: dict, state: dict) -> Path:
    """Writes checkpoint `step` under OUTPUT/checkpoints and deletes all but the newest KEEP."""
    from safetensors.torch import save_file

    root = Path(output) / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with writing(tmp, full_disk=f"{root}: no space left on the disk for a checkpoint; free some space and run the "
                                "same command with --resume (the last checkpoint is unchanged)"):
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / "tensors.safetensors"))
        state = dict(state, tensors_sha256=_sha256(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        fsync_folder(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(output: Path) -> tuple[dict, dict, Path] | None:
    """(tensors, state, folder) of the newest whole checkpoint, or None when there is none.
    Torn or corrupt checkpoints are skipped (the reason is recorded in state["skipped"])."""
    from safetensors.torch import load_file

    skipped = []
    for folder in sorted((Path(output) / FOLDER).glob("step-*"), reverse=True):
        try:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            if _sha256(folder / "tensors.safetensors") != state.get("tensors_sha256"):
                raise ValueError("tensors do not match their checksum")
            tensors = load_file(str(folder / "tensors.safetensors"))
        except (OSError, ValueError, KeyError) as e:
            skipped.append(f"{folder.name}: {e}")
            continue
        state["skipped"] = skipped
        return tensors, state, folder
    return None


def exist(output: Path) -> bool:
    return any((Path(output) / FOLDER).glob("step-*"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
