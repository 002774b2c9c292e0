"""Suspect labels: rows of the user's own data whose label is probably wrong.

    result = finebert.audit("data.csv")            # k-fold fine-tuning, out-of-fold probabilities, cleanlab
    result.write("suspects.csv")                   # original columns + given_label, likely_label, score

Every row is scored by a model that never saw it: the data is cut into k folds, a model is fine-tuned
on k - 1 of them and predicts the held-out one. Confident learning (cleanlab's find_label_issues)
then flags rows whose given label disagrees with what the models are confident of; they are ranked
by cleanlab's label-quality score (low = suspect). k and epochs are small by default so that an audit
of a few thousand rows takes minutes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finebert.config import TrainConfig
from finebert.data import iter_rows, read_dataset
from finebert.errors import ConfigError, DataError, MissingExtraError
from finebert.labels import LabelSpace
from finebert.training import train


@dataclass
class AuditResult:
    columns: list[str]  # the file's columns, as written
    text_column: str  # the one holding the texts
    rows: list[dict]  # every data row (column -> value), in file order
    space: LabelSpace
    probabilities: np.ndarray  # (N, C) out-of-fold probabilities
    scores: np.ndarray  # (N,) label quality, 0 to 1: low means the given label is suspect
    flagged: np.ndarray  # row indices cleanlab flags as label issues, most suspect first
    given: list[str]  # each row's label(s), as names
    likely: list[str]  # what the out-of-fold model says instead

    def ranking(self) -> np.ndarray:
        """Every row index, most suspect first: the flagged ones, then the rest by score."""
        rest = np.setdiff1d(np.argsort(self.scores, kind="stable"), self.flagged, assume_unique=True)
        rest = rest[np.argsort(self.scores[rest], kind="stable")]
        return np.concatenate([self.flagged, rest]).astype(int)

    def write(self, path: str | Path, *, every_row: bool = False) -> Path:
        """A CSV of the flagged rows (or, with every_row, all rows), most suspect first: the original columns
        and given_label, likely_label, score, flagged. Written atomically."""
        path = Path(path)
        order = self.ranking() if every_row else self.flagged
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*self.columns, "given_label", "likely_label", "score", "flagged"])
            flagged = set(self.flagged.tolist())
            for i in order:
                cells = [_cell(self.rows[i].get(c)) for c in self.columns]
                writer.writerow([*cells, self.given[i], self.likely[i], f"{self.scores[i]:.4f}", int(i in flagged)])
        tmp.replace(path)
        return path


def audit(data: str | Path, *, folds: int = 4, epochs: float = 1.0, quiet: bool = False, **settings) -> AuditResult:
    """Out-of-fold probabilities from `folds`-fold fine-tuning (TrainConfig `settings` apply to each fold),
    ranked with confident learning."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        raise MissingExtraError("cleanlab", "audit") from None
    from sklearn.model_selection import KFold, StratifiedKFold
    from finebert.progress import progress_bar

    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds={folds!r} is invalid: use a whole number of at least 2, e.g. 4")
    config = TrainConfig(epochs=epochs, **settings)
    dataset = read_dataset(data, text_column=config.text_column, label_column=config.label_column,
                           text_pair_column=config.text_pair_column)
    space = LabelSpace.from_data(dataset.labels, names=config.label_names, multi_label=config.multi_label,
                                 separator=config.label_separator, source=dataset.source)
    y = space.encode(dataset.labels, dataset.source)
    if not space.multi_label and np.bincount(y).min() < folds:
        raise DataError(f"{dataset.source}: a class has fewer rows than folds={folds}; use fewer folds or more data")
    splitter = KFold(folds, shuffle=True, random_state=config.seed) if space.multi_label else \
        StratifiedKFold(folds, shuffle=True, random_state=config.seed)
    probabilities = np.zeros((len(y), len(space)), dtype=np.float32)
    decisions = np.zeros((len(y), len(space)), dtype=bool)  # (N, C) each held-out row's predicted labels
    bar = progress_bar(total=folds, desc="audit folds", unit="fold", disable=quiet)
    for train_rows, held_out in splitter.split(np.zeros(len(y)), y if y.ndim == 1 else None):
        # each fold trains on all its rows (no validation split) with the label space of the whole file
        fold_config = dataclasses.replace(config, validation_split=0.0)
        clf = train(dataset.subset(train_rows), config=fold_config, quiet=True, label_space=space)
        part = dataset.subset(held_out)
        out = clf.label_space.postprocess(clf.logits(part.texts, part.pairs))
        probabilities[held_out], decisions[held_out] = out.probabilities, out.decisions
        bar.update(1)
    bar.close()

    if space.multi_label:
        given_ids = [list(np.flatnonzero(row)) for row in y]
        flagged = find_label_issues(given_ids, probabilities, multi_label=True, return_indices_ranked_by="self_confidence")
        from cleanlab.multilabel_classification.rank import get_label_quality_scores as multi_scores

        scores = multi_scores(given_ids, probabilities)
    else:
        flagged = find_label_issues(y, probabilities, return_indices_ranked_by="self_confidence")
        scores = get_label_quality_scores(y, probabilities)
    likely = [", ".join(space.names[k] for k in np.flatnonzero(row)) for row in decisions]  # the folds' own decisions
    given = [", ".join(space.names[k] for k in np.flatnonzero(row)) for row in space.one_hot(y)]
    columns, rows = iter_rows(data)
    records = [row if isinstance(row, dict) else dict(zip(columns, row)) for _, row in rows]
    return AuditResult(columns, dataset.text_column, records, space, probabilities, np.asarray(scores), np.asarray(flagged, dtype=int),
                       given, likely)


def _cell(value) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)
