"""Stage 1, data: read a user's CSV/TSV/JSONL/text file into texts and labels, or use the built-in sample.

Every problem is reported as a DataError naming the file, the row (1-based, header excluded) or column,
and the fix; nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from finebert.errors import DataError

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "message", "comment", "body")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "category", "target", "y")

# The built-in sample: the tool works with no data at all (label 1 = positive, 0 = negative).
SAMPLE_TEXTS = [
    "The movie was absolutely fantastic!",
    "I hated every minute of it.",
    "A wonderful story with great acting.",
    "It was boring and way too long.",
    "The visuals were stunning!",
]
SAMPLE_LABELS = ["1", "0", "1", "0", "1"]
SAMPLE_LABEL_NAMES = ["negative", "positive"]  # names of the sorted integer labels 0 and 1


@dataclass
class Dataset:
    """Texts with their labels as strings (None when the file has no label column)."""

    texts: list[str]
    labels: list[str] | None
    source: str  # file name, for messages

    def __len__(self):
        return len(self.texts)


def sample_dataset() -> Dataset:
    return Dataset(list(SAMPLE_TEXTS), list(SAMPLE_LABELS), "built-in sample")


def _read_rows(path: Path) -> tuple[list[str], list[list] | list[dict]]:
    """Returns (column names, rows) for .csv/.tsv (lists) or .jsonl (dicts); .txt gives one 'text' column."""
    suffix = path.suffix.lower()
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if suffix in (".jsonl", ".json", ".ndjson"):
                rows = []
                for i, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}: line {i} is not valid JSON ({e.msg}); write one JSON object per line") from None
                    if not isinstance(row, dict):
                        raise DataError(f"{path}: line {i} is not a JSON object; write one {{\"text\": ..., \"label\": ...}} per line")
                    rows.append(row)
                columns = list(dict.fromkeys(k for row in rows for k in row))
                return columns, rows
            if suffix in (".txt", ".text"):
                return ["text"], [[line.rstrip("\r\n")] for line in f if line.strip()]
            if suffix == ".tsv":  # GLUE style: tab-separated, no quoting
                reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            elif suffix == ".csv":
                reader = csv.reader(f)
            else:
                raise DataError(f"{path}: unknown file type '{suffix}'; use .csv, .tsv, .jsonl or .txt")
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty; it needs a header row and at least one data row")
            return [h.strip() for h in header], list(reader)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a data file; give a .csv, .tsv, .jsonl or .txt file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start}); save the file as UTF-8 and try again") from None
    except csv.Error as e:
        raise DataError(f"{path}: cannot be parsed as {suffix[1:].upper()} ({e}); check its quoting and delimiter") from None


def _pick_column(path, columns, wanted, candidates, option):
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise DataError(f"{path}: no column {wanted!r}; columns found: {', '.join(columns)}. Pass {option} with one of them")
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def read_dataset(path: str | Path, *, text_column: str | None = None, label_column: str | None = None,
                 require_labels: bool = True) -> Dataset:
    """Read a labelled (or, with require_labels=False, possibly unlabelled) text file."""
    path = Path(path)
    columns, rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path}: has no data rows; add at least one row under the header")
    text_col = _pick_column(path, columns, text_column, TEXT_COLUMNS, "--text-column")
    if text_col is None:
        if len(columns) == 1 and not require_labels:
            text_col = columns[0]
        else:
            raise DataError(f"{path}: no text column found (looked for {', '.join(TEXT_COLUMNS)}); columns found: "
                            f"{', '.join(columns)}. Pass --text-column with one of them")
    label_col = _pick_column(path, columns, label_column, LABEL_COLUMNS, "--label-column")
    if label_col is None and require_labels:
        raise DataError(f"{path}: no label column found (looked for {', '.join(LABEL_COLUMNS)}); columns found: "
                        f"{', '.join(columns)}. Pass --label-column with one of them")

    def cell(row, col, i):
        if isinstance(row, dict):
            return row.get(col)
        index = columns.index(col) if col not in cache else cache[col]
        cache[col] = index
        if index >= len(row):
            raise DataError(f"{path}: row {i} has {len(row)} fields but the header has {len(columns)}; fix that row")
        return row[index]

    cache: dict = {}
    texts, labels = [], [] if label_col else None
    for i, row in enumerate(rows, 1):
        text = cell(row, text_col, i)
        if not isinstance(text, str):
            raise DataError(f"{path}: row {i}, column {text_col!r} is {json.dumps(text)}, not text; put a string there")
        if not text.strip():
            raise DataError(f"{path}: row {i}, column {text_col!r} is empty; fill it in or remove the row")
        texts.append(text)
        if label_col:
            label = cell(row, label_col, i)
            if isinstance(label, bool) or label is None or (isinstance(label, str) and not label.strip()):
                raise DataError(f"{path}: row {i}, column {label_col!r} has no label; fill it in or remove the row")
            if isinstance(label, float) and label.is_integer():
                label = int(label)
            labels.append(str(label).strip())
    return Dataset(texts, labels, str(path))


def label_vocabulary(labels: list[str], names: list[str] | None = None) -> tuple[list[str], dict[str, int]]:
    """The classes in a stable order (integers numerically, strings alphabetically) and a raw-label -> id map.

    With `names`, integer labels are shown by name: names[k] is the k-th integer label in sorted order.
    Returns (display names, {raw label: class id}).
    """
    raw = sorted(set(labels), key=lambda s: (0, int(s), "") if _is_int(s) else (1, 0, s))
    if names is not None:
        if len(names) != len(raw):
            raise DataError(f"--label-names gives {len(names)} names but the data has {len(raw)} labels "
                            f"({', '.join(raw)}); give one name per label")
        return list(names), {r: k for k, r in enumerate(raw)}
    return raw, {r: k for k, r in enumerate(raw)}


def check_trainable(data: Dataset) -> None:
    if len(set(data.labels)) < 2:
        only = data.labels[0] if data.labels else "none"
        raise DataError(f"{data.source}: every row has the label {only!r}; a classifier needs at least two classes")


def stratified_split(labels: list[int], fraction: float, max_rows: int, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, validation): about `fraction` of each class held out, at most `max_rows` in all.

    Returns no validation rows when the data is too small to spare at least one row per class.
    """
    n_val = min(int(len(labels) * fraction), max_rows)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    if n_val < len(by_class) or any(len(v) < 2 for v in by_class.values()):
        return list(range(len(labels))), []
    rng = random.Random(seed)
    val = []
    for members in by_class.values():
        members = members[:]
        rng.shuffle(members)
        take = max(1, round(len(members) * n_val / len(labels)))
        val.extend(members[:min(take, len(members) - 1)])
    val_set = set(val)
    return [i for i in range(len(labels)) if i not in val_set], sorted(val)


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False
