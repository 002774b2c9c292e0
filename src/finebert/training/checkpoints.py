"""Training checkpoints: a run's whole state in safetensors + JSON, written atomically; the last two kept.

    checkpoint(state, output)                  # a loop.TrainState -> OUTPUT/checkpoints/step-N (written by save)
    restore(state, latest(output), task, config)   # and back, for the same command on the same data

    OUTPUT/checkpoints/step-00000420/tensors.safetensors   weights, optimizer moments, best weights, torch RNG
    OUTPUT/checkpoints/step-00000420/state.json            step, place in the epoch, history, data-order RNG,
                                                           schedules, settings, data fingerprint, tensors' sha256

A checkpoint folder is written under a temporary name, fsynced and renamed, so it is either whole or
absent. A torn or corrupt one (its tensors no longer match the sha256 in state.json, or state.json does
not parse) is skipped and the one before it is used. No pickle: nothing here can run code when loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from finebert.config import TrainConfig
from finebert.errors import ConfigError
from finebert.model_folder import fsync_folder, sha256, writing
from finebert.training.optim import UsedRows
from finebert.training.recipes import Task

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
        state = dict(state, tensors_sha256=sha256(tmp / "tensors.safetensors"))
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
            if sha256(folder / "tensors.safetensors") != state.get("tensors_sha256"):
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


# -- a run's state <-> a checkpoint ----------------------------------------------------------------
def checkpoint(state, output: Path) -> None:
    """Saves everything `state` (a loop.TrainState) needs to continue, optimizer moments included."""
    import torch

    with UsedRows.whole_table(state.words):
        tensors = {f"model.{k}": v for k, v in state.model.state_dict().items()}
    tensors["rng.torch"] = torch.get_rng_state()
    moments, optimizer = state.optimizer.state_dict()
    tensors |= {f"optim.{key}": value for key, value in moments.items()}
    best = None
    if state.best is not None:
        tensors |= {f"best.{k}": v for k, v in state.best["weights"].items()}
        tensors["val_logits"] = torch.from_numpy(np.ascontiguousarray(state.best["logits"]))
        best = {k: v for k, v in state.best.items() if k not in ("weights", "logits")}
    record = {"step": state.step, "epoch": state.epoch, "position": state.position, "last_loss": state.last_loss,
              "history": state.history, "best": best, "elapsed": state.seconds(), "epoch_rng": state.epoch_rng,
              "optimizer": optimizer, "total_steps": state.total_steps, "stopped": state.stopped,
              "unused_rows_scale": state.words.scale if state.words else None, "fingerprint": state.fingerprint}
    save(output, state.step, tensors, record)
    state.saved()


def restore(state, found: tuple[dict, dict, Path], task: Task, config: TrainConfig) -> None:
    """Puts a checkpoint made by the same command on the same data back into `state` (a loop.TrainState)."""
    import torch

    tensors, record, folder = found
    if record.get("fingerprint") != fingerprint(task, config, state.world):
        raise ConfigError(f"{folder}: this checkpoint was made with other data, settings or number of processes; "
                          "run the same command as the interrupted run with --resume, or delete the checkpoints folder")
    with UsedRows.whole_table(state.words):  # the rows used are read back from the table on leaving
        state.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if state.words is not None:
        state.words.scale = record["unused_rows_scale"]
    torch.set_rng_state(tensors["rng.torch"])
    state.optimizer.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}, record["optimizer"])
    state.step, state.epoch, state.position = record["step"], record["epoch"], record["position"]
    state.last_loss = record.get("last_loss", float("nan"))  # checkpoints written before it was kept have none
    state.history, state.elapsed, state.stopped = record["history"], record["elapsed"], record["stopped"]
    state.epoch_rng = record["epoch_rng"]
    state.rng.bit_generator.state = state.epoch_rng
    if state.position == 0:  # saved at an epoch's end: the next epoch draws from where that one ended
        state.epoch_batches(config)
    if record["best"] is not None:
        state.best = dict(record["best"], weights={k[5:]: v for k, v in tensors.items() if k.startswith("best.")},
                          logits=tensors["val_logits"].numpy())
    state.skipped = record.get("skipped", [])


def fingerprint(task: Task, config: TrainConfig, world: int = 1) -> str:
    """What a resumed run must share with the interrupted one: settings (bar the time budget and
    checkpoint interval), training data and the number of processes."""
    settings = dataclasses.replace(config, max_time=None, checkpoint_minutes=0).to_dict()
    digest = hashlib.sha256(json.dumps([settings, world], sort_keys=True).encode())
    for ids in task.train.ids:
        digest.update(np.asarray(ids, dtype=np.int32).tobytes())
    digest.update(np.ascontiguousarray(task.y).tobytes())
    if task.soft is not None:  # distilling: the teacher's answers and how they are mixed in
        digest.update(np.ascontiguousarray(task.soft.logits).tobytes())
        digest.update(f"{task.soft.alpha}:{task.soft.temperature}".encode())
    return digest.hexdigest()
