"""The label space: the one place that knows a task's labels, and the one step from logits to decisions.

    space = LabelSpace.from_data(["ham", "spam", "ham"])            # single-label: softmax + argmax
    space = LabelSpace.from_data(["joy,surprise", "anger"], multi_label=True)   # multi-label: sigmoid + thresholds
    y = space.encode(labels, source)          # (N,) class ids, or (N, C) 0/1 targets for multi-label
    out = space.postprocess(logits)           # Outputs: probabilities (N, C) and decisions (N, C) booleans
    shown = space.shown(out)                  # what every path shows: the labels decided, the one named first

It is built once from the training data and saved in the model folder (finebert.json). Training,
validation files, evaluation, export and serving all turn labels into ids and logits into labels here.

Class ids follow a stable order: integer labels numerically (0, 1, 2, 10), string labels alphabetically.
`names` renames integer labels only (names[k] is the k-th integer in that order); on string labels it
is refused, since a rename there could silently swap two classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from finebert.errors import DataError

SINGLE_LABEL = "single_label"
MULTI_LABEL = "multi_label"


@dataclass
class Outputs:
    """What a model says about N texts: the single source for labels, confidences and probabilities."""

    probabilities: np.ndarray  # (N, C) softmax rows (sum to 1) or independent sigmoids (multi-label)
    decisions: np.ndarray  # (N, C) bool: the labels predicted for each text (exactly one for single-label)



@dataclass
class Shown:
    """What every path shows for N texts: Classifier.predict and classify, the CLI, scored files, Ray, the server,
    its page and explain. Made by LabelSpace.shown alone, so no two paths can name different labels."""

    top: np.ndarray  # (N,) the id of the label named first: the most probable of the labels decided
    label: list[str]  # its name, per text
    confidence: np.ndarray  # (N,) its probability
    labels: list[list[str]]  # every label decided, per text: [label] for single-label, those over their thresholds


@dataclass
class LabelSpace:
    names: list[str]  # display names; the index is the class id the model's logits use
    raw: list[str]  # each label as written in the training file (the same as names unless renamed)
    problem_type: str = SINGLE_LABEL  # "single_label" (softmax, argmax) or "multi_label" (sigmoids, thresholds)
    separator: str | None = None  # multi-label: labels in one CSV/TSV cell are joined by this
    thresholds: list[float] = field(default_factory=list)  # multi-label: a logit threshold per label (0 = p 0.5)

    def __post_init__(self):
        if self.problem_type == MULTI_LABEL and not self.thresholds:
            self.thresholds = [0.0] * len(self.names)

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def from_data(cls, labels: list, *, names: list[str] | None = None, multi_label: bool = False,
                  separator: str = ",", source: str = "the training data") -> "LabelSpace":
        """The label space of training labels (strings, or lists of strings from JSONL for multi-label)."""
        multi = multi_label or any(isinstance(cell, list) for cell in labels)
        sep = separator if multi else None
        found = sorted({label for i, cell in enumerate(labels, 1) for label in _split(cell, sep, source, i)},
                       key=_order)
        if len(found) < 2 and not multi:
            only = found[0] if found else "none"
            raise DataError(f"{source}: every row has the label {only!r}; a classifier needs at least two classes")
        if multi and len(found) < 1:
            raise DataError(f"{source}: no labels found; give each row at least one label")
        display = list(found)
        if names is not None:
            if not all(_is_int(label) for label in found):
                raise DataError(f"--label-names renames integer labels only, but the labels in {source} are already "
                                f"names ({', '.join(found[:6])}); leave --label-names out")
            if len(names) != len(found):
                raise DataError(f"--label-names gives {len(names)} names but {source} has {len(found)} labels "
                                f"({', '.join(found)}); give one name per label, in numeric order")
            display = list(names)
        return cls(display, found, MULTI_LABEL if multi else SINGLE_LABEL, sep)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    def __len__(self) -> int:
        return len(self.names)

    # -- labels <-> ids -------------------------------------------------------------------------
    def encode(self, labels: list, source: str) -> np.ndarray:
        """Targets for labels written as in training (`1`) or by name (`positive`): (N,) ids, or (N, C)
        0/1 floats for multi-label. A label the model does not know is an error naming its row."""
        to_id = {raw: k for k, raw in enumerate(self.raw)} | {name: k for k, name in enumerate(self.names)}
        if self.multi_label:
            y = np.zeros((len(labels), len(self)), dtype=np.float32)
        else:
            y = np.zeros(len(labels), dtype=np.int64)
        for i, cell in enumerate(labels, 1):
            parts = _split(cell, self.separator, source, i)
            if not self.multi_label and len(parts) != 1:
                raise DataError(f"{source}: row {i} has several labels ({', '.join(parts)}) but the model is "
                                "single-label; give one label per row")
            for label in parts:
                if label not in to_id:
                    raise DataError(f"{source}: row {i} has the label {label!r}, which the model does not know "
                                    f"({', '.join(self.names)}); use data with the training labels")
                if self.multi_label:
                    y[i - 1, to_id[label]] = 1.0
                else:
                    y[i - 1] = to_id[label]
        return y

    def one_hot(self, y: np.ndarray) -> np.ndarray:
        """(N, C) 0/1 targets from encode()'s output, whatever the problem type."""
        return y if y.ndim == 2 else np.eye(len(self), dtype=np.float32)[y]

    # -- logits -> probabilities -> decisions: the one place ----------------------------------------
    def postprocess(self, logits: np.ndarray, temperature: float | list[float] | None = None) -> Outputs:
        """Probabilities and decisions from logits (N, C). `temperature` (one, or one per label for
        multi-label) divides the logits first: calibration. It never changes a decision."""
        logits = np.asarray(logits, dtype=np.float64)
        scaled = logits / np.asarray(temperature if temperature is not None else 1.0)  # (N, C)
        if self.multi_label:
            probs = 1.0 / (1.0 + np.exp(-scaled))  # (N, C) independent sigmoids
            decisions = logits >= np.asarray(self.thresholds)  # (N, C)
            none = ~decisions.any(axis=1)  # no label passes: predict the most probable one
            decisions[none, logits[none].argmax(axis=1)] = True
        else:
            z = scaled - scaled.max(axis=1, keepdims=True)
            e = np.exp(z)
            probs = e / e.sum(axis=1, keepdims=True)  # (N, C) softmax
            decisions = np.zeros(logits.shape, dtype=bool)
            decisions[np.arange(len(logits)), logits.argmax(axis=1)] = True
        return Outputs(probs.astype(np.float32), decisions)

    def shown(self, outputs: Outputs) -> Shown:
        """The labels decided for each text and the one named first, the most probable of them (multi-label: of
        those over their thresholds, never a label that is not decided)."""
        probs, decisions = outputs.probabilities, outputs.decisions  # (N, C), (N, C)
        top = np.where(decisions, probs, -1.0).argmax(axis=1)  # (N,)
        return Shown(top, [self.names[k] for k in top], probs[np.arange(len(top)), top],
                     [[self.names[k] for k in np.flatnonzero(row)] for row in decisions])

    def tune_thresholds(self, logits: np.ndarray, y: np.ndarray) -> list[float]:
        """Multi-label: the logit threshold per label that maximises that label's F1 on validation data,
        placed halfway between the lowest score it accepts and the next score below (not on a score)."""
        from sklearn.metrics import precision_recall_curve

        thresholds = []
        for c in range(len(self)):
            truth, scores = y[:, c], logits[:, c]
            if truth.sum() == 0 or truth.sum() == len(truth):
                thresholds.append(0.0)
                continue
            precision, recall, cuts = precision_recall_curve(truth, scores)
            f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
            cut = cuts[int(np.argmax(f1[:-1]))]
            below = scores[scores < cut]
            thresholds.append(float((cut + below.max()) / 2 if len(below) else cut))
        return thresholds

    # -- saving ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"problem_type": self.problem_type, "names": self.names, "raw": self.raw,
                "separator": self.separator, "thresholds": self.thresholds}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSpace":
        return cls(list(d["names"]), list(d.get("raw") or d["names"]), d.get("problem_type", SINGLE_LABEL),
                   d.get("separator"), list(d.get("thresholds") or []))


def _split(cell, separator: str | None, source: str, row: int) -> list[str]:
    """The labels in one cell: a JSON list, a string split on `separator` (multi-label), or one label."""
    if isinstance(cell, list):
        parts = cell
    elif separator is not None:
        parts = [p.strip() for p in str(cell).split(separator)]
    else:
        parts = [cell]
    out = []
    for p in parts:
        if not isinstance(p, str) or not p.strip():
            raise DataError(f"{source}: row {row} has the label {json.dumps(p)}; write labels as non-empty text")
        out.append(p.strip())
    return list(dict.fromkeys(out))


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _order(label: str):
    return (0, int(label), "") if _is_int(label) else (1, 0, label)
