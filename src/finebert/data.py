"""Stage 1, data: read a user's CSV/TSV/JSONL/text file into texts and labels, or use the built-in sample.

Every problem is reported as a DataError naming the file, the row (1-based, header excluded) or column,
and the fix; nothing here imports torch.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from finebert.errors import DataError

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "message", "comment", "body",
                "sentence1", "text_a", "question1", "premise")  # the last four: first texts of sentence pairs
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
    """Texts with their labels as found in the file (None when the file has no label column).

    A label cell is a string (`spam`, `1`, or `joy,surprise` for multi-label), or a list of strings (a JSON
    list in JSONL). `pairs` holds the second text of each row for sentence-pair tasks.
    """

    texts: list[str]
    labels: list | None
    source: str  # file name, for messages
    pairs: list[str] | None = None
    text_column: str | None = None  # the column the texts came from, when read from a file

    def __len__(self):
        return len(self.texts)

    def subset(self, rows) -> "Dataset":
        pick = lambda values: None if values is None else [values[i] for i in rows]  # noqa: E731
        return Dataset(pick(self.texts), pick(self.labels), self.source, pick(self.pairs), self.text_column)


def sample_dataset() -> Dataset:
    return Dataset(list(SAMPLE_TEXTS), list(SAMPLE_LABELS), "built-in sample")


MAX_TEXT_CHARS = 1_000_000  # a longer cell is almost always a broken file (no line ends, an unclosed quote)
MISSING = {"nan", "NaN", "NAN"}  # what pandas writes for a missing value: not a label


def _open_text(path: Path):
    """The file as text. UTF-8 (with or without BOM) and UTF-16 with BOM are read; bytes that are not
    UTF-8 are kept as surrogates so that the row holding them can be named (see _text)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a data file; give a .csv, .tsv, .jsonl or .txt file") from None
    except PermissionError:
        raise DataError(f"{path}: cannot be read (permission denied); check the file's permissions") from None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif b"\x00" in head:
        raise DataError(f"{path}: is a binary file, not text (it holds NUL bytes); give a UTF-8 .csv, .tsv, .jsonl or .txt file")
    else:
        encoding = "utf-8-sig"
    return open(path, encoding=encoding, errors="surrogateescape", newline="")


def iter_rows(path: str | Path) -> tuple[list[str], Iterator[tuple[int, list | dict]]]:
    """(column names, (row number, row) pairs read lazily): lists of cells for .csv/.tsv, dicts for .jsonl;
    .txt gives one 'text' column. Blank lines are skipped but counted, so row numbers stay the file's.
    JSONL columns are the keys found in the first 1,000 objects."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".json", ".ndjson", ".txt", ".text"):
        raise DataError(f"{path}: unknown file type '{suffix}'; use .csv, .tsv, .jsonl or .txt")
    f = _open_text(path)
    try:
        if suffix in (".jsonl", ".json", ".ndjson"):
            lines = enumerate(f, 1)
            head = [(i, _json_row(path, i, line)) for i, line in itertools.islice(lines, 1000)]
            columns = list(dict.fromkeys(k for _, row in head if row for k in row))
            rows = itertools.chain(head, ((i, _json_row(path, i, line)) for i, line in lines))
        elif suffix in (".txt", ".text"):
            columns, rows = ["text"], ((i, [line.rstrip("\r\n")] if line.strip() else None) for i, line in enumerate(f, 1))
        else:
            csv.field_size_limit(MAX_TEXT_CHARS + 1)
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv" else csv.reader(f)
            header = _csv_step(path, reader, lambda: next(reader, None), 1)
            if header is None:
                raise DataError(f"{path}: the file is empty; it needs a header row and at least one data row")
            columns = [h.strip() for h in header]
            rows = ((i, row or None) for i, row in enumerate(_csv_rows(path, reader), 1))
    except BaseException:
        f.close()
        raise

    def lazily():
        with f:
            for i, row in rows:
                if row is not None:
                    yield i, row

    return columns, lazily()


def _csv_rows(path, reader):
    while True:
        row = _csv_step(path, reader, lambda: next(reader, StopIteration), None)
        if row is StopIteration:
            return
        yield row


def _csv_step(path, reader, step, row):
    """One step of the csv reader, its errors turned into DataErrors naming the row."""
    try:
        return step()
    except csv.Error as e:
        row = row or max(reader.line_num - 1, 1)
        suffix = path.suffix[1:].upper()
        if "field larger than field limit" in str(e):
            raise DataError(f"{path}: row {row} has a field of over {MAX_TEXT_CHARS:,} characters; split that text "
                            "into several rows, or check the file for an unclosed quote") from None
        raise DataError(f"{path}: row {row} cannot be parsed as {suffix} ({e}); check its quoting and delimiter") from None


def _json_row(path, i, line):
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {i} is not valid JSON ({e.msg}); write one JSON object per line") from None
    if not isinstance(row, dict):
        raise DataError(f"{path}: line {i} is not a JSON object; write one {{\"text\": ..., \"label\": ...}} per line")
    return row


def _pick_column(path, columns, wanted, candidates, option):
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise DataError(f"{path}: no column {wanted!r}; columns found: {', '.join(columns)}. Pass {option} with one of them")
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name is not None and name.lower() in lowered:
            return lowered[name.lower()]
    return None


def read_dataset(path: str | Path, *, text_column: str | None = None, label_column: str | None = None,
                 text_pair_column: str | None = None, require_labels: bool = True,
                 model_columns: tuple[str | None, str | None] = (None, None)) -> Dataset:
    """Read a labelled text file (with require_labels=False: its texts only, for prediction).

    `model_columns` = (text, label) columns a model was trained with: looked for first when no column
    is named, so that files laid out as the training file need no flags.
    """
    path = Path(path)
    columns, rows = iter_rows(path)
    try:
        reader = RowReader(path, columns, text_column=text_column, label_column=label_column,
                           text_pair_column=text_pair_column, require_labels=require_labels, model_columns=model_columns)
        texts, labels, pairs = [], [] if reader.label_col else None, [] if reader.pair_col else None
        for i, row in rows:
            text, pair, label = reader.read(i, row)
            texts.append(text)
            if pairs is not None:
                pairs.append(pair)
            if labels is not None:
                labels.append(label)
    finally:
        rows.close()
    if not texts:
        raise DataError(f"{path}: has no data rows; add at least one row under the header")
    return Dataset(texts, labels, str(path), pairs, reader.text_col)


class RowReader:
    """Finds the text, pair and label columns of a file (or says which are missing), then reads and checks
    one row at a time: the rules read_dataset and streaming prediction share."""

    def __init__(self, path: Path, columns: list[str], *, text_column=None, label_column=None, text_pair_column=None,
                 require_labels=True, model_columns=(None, None)):
        self.path, self.columns = path, columns
        self.index = {c: k for k, c in enumerate(columns)}
        delimiter = next((d for d in (";", "\t", "|", ",") if len(columns) == 1 and d in columns[0]), None)
        if delimiter is not None and path.suffix.lower() in (".csv", ".tsv"):
            raise DataError(f"{path}: the header is one column, {columns[0]!r}: the file seems to be separated by "
                            f"{delimiter!r}; save it comma-separated as .csv or tab-separated as .tsv")
        self.text_col = _pick_column(path, columns, text_column, (model_columns[0], *TEXT_COLUMNS), "--text-column")
        if self.text_col is None:
            if len(columns) == 1 and not require_labels:
                self.text_col = columns[0]
            else:
                raise DataError(f"{path}: no text column found (looked for {', '.join(TEXT_COLUMNS)}); columns found: "
                                f"{', '.join(columns)}. Pass --text-column with one of them")
        self.pair_col = _pick_column(path, columns, text_pair_column, (), "--text-pair-column") if text_pair_column else None
        # predicting: labels are not read, so bad ones do not matter
        self.label_col = _pick_column(path, columns, label_column, (model_columns[1], *LABEL_COLUMNS),
                                      "--label-column") if require_labels else None
        if self.label_col is None and require_labels:
            raise DataError(f"{path}: no label column found (looked for {', '.join(LABEL_COLUMNS)}); columns found: "
                            f"{', '.join(columns)}. Pass --label-column with one of them")

    def read(self, i: int, row) -> tuple[str, str | None, object]:
        """(text, pair, label) of data row i, checked."""
        path = self.path
        if not isinstance(row, dict) and len(row) != len(self.columns):
            n = len(row)
            raise DataError(f"{path}: row {i} has {n} field{'s' if n != 1 else ''} but the header has {len(self.columns)}; "
                            + ("put quotes around text that contains the delimiter, or fix that row"
                               if n > len(self.columns) else "fill in the missing fields or remove the row"))
        cell = (lambda col: row.get(col)) if isinstance(row, dict) else (lambda col: row[self.index[col]])
        text = _text(cell(self.text_col), path, i, self.text_col)
        pair = _text(cell(self.pair_col), path, i, self.pair_col) if self.pair_col else None
        label = _label(cell(self.label_col), path, i, self.label_col) if self.label_col else None
        return text, pair, label


def _text(value, path, row, column) -> str:
    if not isinstance(value, str):
        raise DataError(f"{path}: row {row}, column {column!r} is {json.dumps(value)}, not text; put a string there")
    if not value.strip():
        raise DataError(f"{path}: row {row}, column {column!r} is empty; fill it in or remove the row")
    _check_utf8(value, path, row, column)
    if len(value) > MAX_TEXT_CHARS:
        raise DataError(f"{path}: row {row}, column {column!r} has {len(value):,} characters, over the limit of "
                        f"{MAX_TEXT_CHARS:,}; split that text into several rows")
    return value


def _check_utf8(value: str, path, row, column) -> None:
    """Bytes that were not UTF-8 came through as surrogates (surrogateescape): name the row, and the fix."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{path}: row {row}, column {column!r} is not valid UTF-8 (the file looks like Latin-1 or "
                            "Windows-1252); save the file as UTF-8 and try again") from None


def _label(value, path, row, column):
    """A label cell as a string, or a list of strings (JSONL multi-label); anything else is an error."""
    if isinstance(value, float) and value != value:  # NaN in JSON
        value = None
    if value is None or (isinstance(value, str) and (not value.strip() or value.strip() in MISSING)) or value == []:
        raise DataError(f"{path}: row {row}, column {column!r} has no label; fill it in or remove the row")
    if isinstance(value, bool) or isinstance(value, dict) or (isinstance(value, float) and not value.is_integer()):
        raise DataError(f"{path}: row {row}, column {column!r} is {json.dumps(value)}, which is not a label; "
                        "write a label name or an integer class")
    if isinstance(value, list):
        if not all(isinstance(v, str) and v.strip() for v in value):
            raise DataError(f"{path}: row {row}, column {column!r} is {json.dumps(value)}; a list of labels must "
                            "hold non-empty strings only")
        return [v.strip() for v in value]
    if isinstance(value, float):
        value = int(value)
    if isinstance(value, str):
        _check_utf8(value, path, row, column)
    return str(value).strip()


def validation_split(y, fraction: float, max_rows: int, seed: int) -> tuple[list[int], list[int]]:
    """Row indices (train, validation): `fraction` of the rows held out, at most `max_rows`, stratified by
    class for single-label ids y (N,); multi-label targets (N, C) are split at random.

    Returns no validation rows when the data is too small to spare at least one row per class.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    n_val = min(int(len(y) * fraction), max_rows)
    rows = np.arange(len(y))
    if y.ndim == 1:
        counts = np.bincount(y)
        counts = counts[counts > 0]
        if n_val < len(counts) or counts.min() < 2 or len(y) - n_val < len(counts):
            return rows.tolist(), []
        train, val = train_test_split(rows, test_size=n_val, stratify=y, random_state=seed)
    else:
        if n_val < 1:
            return rows.tolist(), []
        train, val = train_test_split(rows, test_size=n_val, random_state=seed)
    return sorted(train.tolist()), sorted(val.tolist())
