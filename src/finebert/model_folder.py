"""The model folder, and the one reader and writer of its `finebert.json`.

    config.json, model.safetensors       Hugging Face's layout: AutoModelForSequenceClassification loads it
    tokenizer.json, vocab.txt, ...       the backbone's tokenizer files
    finebert.json                        ModelInfo below: schema version, label space, settings, metrics, ...
    model.onnx, model.int8.onnx          ONNX Runtime engines, written by `finebert export`

Never pickle. Every write is atomic: a new folder is built under a temporary name and swapped in, and
finebert.json is replaced by rename, so a failure at any point leaves the earlier model as it was.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from finebert.config import TrainConfig
from finebert.errors import ModelError
from finebert.labels import LabelSpace
from finebert.version import __version__

FINEBERT_FILE = "finebert.json"
SCHEMA_VERSION = 2  # 1: the first release (labels, raw_labels); 2: label_space, schema_version, calibration


@dataclass
class ModelInfo:
    """Everything finebert.json holds about a trained model."""

    label_space: LabelSpace
    config: TrainConfig
    metrics: dict = field(default_factory=dict)  # training time, validation scores, ...
    history: list = field(default_factory=list)  # one record per epoch (loss, validation scores, seconds)
    data: dict = field(default_factory=dict)  # {"train": path, "validation": path}: what export validates on
    engines: dict = field(default_factory=dict)  # ONNX engines and their validation figures (finebert export)
    default_engine: str = "pytorch"  # the engine Classifier.load uses when none is named
    calibration: dict = field(default_factory=dict)  # per engine: temperature(s) and ECE before/after
    hf_sequence_classification: bool = False  # Hugging Face's auto classes give the same logits
    finebert_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["label_space"], d["config"] = self.label_space.to_dict(), self.config.to_dict()
        return {"schema_version": d.pop("schema_version"), **d}


def read_info(folder: str | Path) -> ModelInfo:
    """finebert.json of a model folder, or a ModelError saying why the folder is not a finebert model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder; give the --output folder of `finebert train`")
    path = folder / FINEBERT_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: not a finebert model (no {FINEBERT_FILE}); train one with `finebert train DATA --output DIR`")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        version = d.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ModelError(f"{path}: written by a newer finebert (schema {version}, this one reads up to "
                             f"{SCHEMA_VERSION}); upgrade with: pip install -U finebert")
        if version == 1:  # labels and raw_labels at the top level, single-label only
            d["label_space"] = {"names": d["labels"], "raw": d.get("raw_labels") or d["labels"]}
        known = {f.name for f in dataclasses.fields(ModelInfo)}
        values = {k: v for k, v in d.items() if k in known}
        values["label_space"] = LabelSpace.from_dict(d["label_space"])
        values["config"] = TrainConfig.from_dict(d.get("config") or {})
        values["schema_version"] = SCHEMA_VERSION
        return ModelInfo(**values)
    except ModelError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: unreadable ({type(e).__name__}: {e}); train the model again") from None


def write_info(folder: str | Path, info: ModelInfo) -> None:
    """Replaces finebert.json atomically (written to a temporary file, flushed, renamed)."""
    info.finebert_version = __version__
    _write_atomic(Path(folder) / FINEBERT_FILE, json.dumps(info.to_dict(), indent=2) + "\n")


def save(folder: str | Path, model, tokenizer, info: ModelInfo, extra=None) -> Path:
    """Writes a whole model folder: weights (Hugging Face layout), tokenizer files and finebert.json, and
    whatever `extra(tmp_folder)` adds (the training report). Built under a temporary name next to `folder`
    and swapped in; a failure leaves any earlier model intact."""
    from finebert.model import hf_compatible, save_model

    folder = Path(folder)
    check_output_folder(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    with writing(tmp, full_disk=f"{folder}: no space left on the disk while saving the model; free some space "
                               "and save again (any earlier model there is unchanged)"):
        save_model(model, tmp, info.label_space.names, multi_label=info.label_space.multi_label)
        tokenizer.save(tmp)
        info.hf_sequence_classification = hf_compatible(model)
        write_info(tmp, info)
        if extra is not None:
            extra(tmp)
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        fsync_folder(tmp)
        replace_folder(tmp, folder)
    return folder


@contextmanager
def writing(tmp: Path, *, full_disk: str):
    """Around writing a temporary folder: if anything fails, the folder goes; a full disk (OSError ENOSPC, or a
    Rust writer's message from safetensors) becomes ModelError(full_disk)."""
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e):
            raise ModelError(full_disk) from None
        raise


def check_output_folder(folder: Path) -> None:
    """An output folder may be new, empty, an earlier finebert model (replaced), or hold only the checkpoints
    of an unfinished run; anything else is refused."""
    folder = Path(folder)
    if not folder.exists():
        return
    ours = folder.is_dir() and ((folder / FINEBERT_FILE).is_file() or {p.name for p in folder.iterdir()} <= {"checkpoints"})
    if not ours:
        raise ModelError(f"{folder}: exists and is not a finebert model folder; choose a new --output folder")


def check_writable(output: Path, backbone: Path) -> None:
    """Refuses, before training, an output folder that cannot be written or a disk without room for the
    model and two checkpoints (each: weights, two optimizer moments, best weights): 10x the backbone."""
    import shutil
    import tempfile

    needed = 10 * sum(f.stat().st_size for f in backbone.glob("*.safetensors"))

    parent = output if output.is_dir() else output.parent
    while not parent.exists():
        parent = parent.parent
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise ModelError(f"{output}: cannot write there ({e.strerror}); choose another --output folder") from None
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise ModelError(f"{output}: only {free / 2**20:.0f} MB free on that disk, and this run needs about "
                         f"{needed / 2**20:.0f} MB (model and checkpoints); free some space or choose another --output")


def replace_folder(new: Path, target: Path) -> None:
    """Puts `new` in place of `target`. If the second rename fails, the old folder goes back where it was."""
    os.chmod(new, 0o755)
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read a megabyte at a time."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_folder(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
