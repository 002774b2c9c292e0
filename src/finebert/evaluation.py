"""Stage 5, evaluation: accuracy, macro precision/recall/F1 and the confusion matrix (scikit-learn)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from finebert.data import Dataset, read_dataset


@dataclass
class Report:
    examples: int
    accuracy: float
    precision: float  # macro average over classes
    recall: float  # macro average over classes
    f1: float  # macro average over classes
    labels: list[str]
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    confusion_matrix: list[list[int]]  # rows: true label, columns: predicted label, in `labels` order

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(classifier, data: str | Path | Dataset, *, text_column: str | None = None,
             label_column: str | None = None) -> Report:
    """Scores `classifier` on labelled data; labels may be written as in training or by name."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    dataset = data if isinstance(data, Dataset) else read_dataset(data, text_column=text_column, label_column=label_column)
    y_true = classifier.class_ids(dataset.labels, dataset.source)
    y_pred = classifier.predict_proba(dataset.texts).argmax(axis=1).tolist()
    classes = list(range(len(classifier.labels)))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    macro = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    per_class = {name: {"precision": round(float(p[k]), 4), "recall": round(float(r[k]), 4),
                        "f1": round(float(f[k]), 4), "support": int(support[k])}
                 for k, name in enumerate(classifier.labels)}
    return Report(examples=len(y_true), accuracy=round(float(accuracy_score(y_true, y_pred)), 4),
                  precision=round(float(macro[0]), 4), recall=round(float(macro[1]), 4), f1=round(float(macro[2]), 4),
                  labels=list(classifier.labels), per_class=per_class,
                  confusion_matrix=confusion_matrix(y_true, y_pred, labels=classes).tolist())
