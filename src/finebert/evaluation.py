"""Stage 5, evaluation: scores of a classifier on labelled data (scikit-learn metrics).

Single-label: accuracy, macro precision/recall/F1, per-class precision/recall/F1 and the confusion matrix.
Multi-label: micro- and macro-F1, exact-match accuracy (every label of a row right) and per-label figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from finebert.calibration import figures
from finebert.data import Dataset, read_dataset
from finebert.labels import LabelSpace, Outputs


@dataclass
class Report:
    examples: int
    problem_type: str  # "single_label" or "multi_label"
    accuracy: float  # single-label: share of rows right; multi-label: share of rows with every label right
    precision: float  # macro average over classes
    recall: float  # macro average over classes
    f1: float  # macro average over classes
    micro_f1: float  # F1 over all (row, label) decisions; equals accuracy for single-label
    labels: list[str]
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    confusion_matrix: list[list[int]] | None  # single-label: rows true, columns predicted, in `labels` order
    calibration: dict  # this engine's temperature; ECE (15 bins) and log loss before and after calibration
    engine: str = "pytorch"

    def to_dict(self) -> dict:
        return asdict(self)


def metrics(space: LabelSpace, outputs: Outputs, y: np.ndarray) -> dict[str, float]:
    """The figures training validates on: accuracy, macro-F1 and micro-F1 (rounded to 4 places)."""
    from sklearn.metrics import accuracy_score, f1_score

    truth, predicted = _as_sklearn(space, outputs, y)
    return {"accuracy": round(float(accuracy_score(truth, predicted)), 4),
            "macro_f1": round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4),
            "micro_f1": round(float(f1_score(truth, predicted, average="micro", zero_division=0)), 4)}


def evaluate(classifier, data: str | Path | Dataset, *, text_column: str | None = None,
             label_column: str | None = None, text_pair_column: str | None = None,
             report: str | Path | None = None) -> Report:
    """Scores `classifier` on labelled data; labels may be written as in training or by name.
    With `report`, also writes metrics.json, plots and a self-contained report.html into that folder."""
    config = classifier.config
    dataset = data if isinstance(data, Dataset) else read_dataset(
        data, text_column=text_column, label_column=label_column, text_pair_column=text_pair_column or config.text_pair_column,
        model_columns=(config.text_column, config.label_column))
    space = classifier.label_space
    y = space.encode(dataset.labels, dataset.source)
    logits = classifier.logits(dataset.texts, dataset.pairs)
    result = score_logits(space, logits, y, classifier.temperature, engine=classifier.engine.name)
    if report is not None:
        from finebert.report import write_report

        write_report(report, result, space, logits, y, classifier.temperature, dataset.texts, dataset.pairs,
                     history=classifier.history, title=f"{Path(dataset.source).name}, {classifier.engine.name} engine")
    return result


def score_logits(space: LabelSpace, logits: np.ndarray, y: np.ndarray, temperature=None, *,
                 engine: str = "pytorch") -> Report:
    """The Report of logits (N, C) against targets y (encode()'s output)."""
    from sklearn.metrics import classification_report, confusion_matrix

    outputs = space.postprocess(logits, temperature)
    truth, predicted = _as_sklearn(space, outputs, y)
    classes = list(range(len(space)))
    report = classification_report(truth, predicted, labels=classes, target_names=space.names, output_dict=True,
                                   zero_division=0)
    per_class = {name: {"precision": round(report[name]["precision"], 4), "recall": round(report[name]["recall"], 4),
                        "f1": round(report[name]["f1-score"], 4), "support": int(report[name]["support"])}
                 for name in space.names}
    scores = metrics(space, outputs, y)
    macro = report["macro avg"]
    return Report(examples=len(y), problem_type=space.problem_type, accuracy=scores["accuracy"],
                  precision=round(macro["precision"], 4), recall=round(macro["recall"], 4), f1=scores["macro_f1"],
                  micro_f1=scores["micro_f1"], labels=list(space.names), per_class=per_class,
                  confusion_matrix=None if space.multi_label else
                  confusion_matrix(truth, predicted, labels=classes).tolist(),
                  calibration={"temperature": temperature, **figures(space, logits, y, temperature)}, engine=engine)


def _as_sklearn(space: LabelSpace, outputs: Outputs, y: np.ndarray):
    """(truth, predicted) as scikit-learn wants them: class ids, or 0/1 indicator matrices for multi-label."""
    if space.multi_label:
        return y.astype(int), outputs.decisions.astype(int)
    return y, outputs.decisions.argmax(axis=1)
