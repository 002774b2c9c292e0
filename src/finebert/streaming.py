"""Scoring files of any size: read a chunk of rows, score it, write it, forget it; memory stays flat.

    finebert predict MODEL --file BIG.csv --output scored.parquet      (or scored.csv, scored.jsonl)

The output keeps every input column as it was and adds `predicted_label`, `confidence` and one
`p_<label>` probability column per class (`predicted_labels` too for multi-label models; JSONL gets a
`probabilities` object instead of the p_ columns). It is written under a temporary name and renamed
when complete, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path


from finebert.data import RowReader, iter_rows
from finebert.errors import ConfigError, MissingExtraError

CHUNK_ROWS = 2048  # rows read, scored and written at a time
OUTPUTS = (".csv", ".jsonl", ".parquet")


def predict_file(classifier, source: str | Path, output: str | Path, *, text_column: str | None = None,
                 text_pair_column: str | None = None, chunk_rows: int = CHUNK_ROWS, quiet: bool = False) -> int:
    """Scores every row of `source` into `output` (.csv, .jsonl or .parquet); returns the number of rows."""
    from finebert.progress import progress_bar

    source, output = Path(source), Path(output)
    if output.suffix.lower() not in OUTPUTS:
        raise ConfigError(f"{output}: unknown output type '{output.suffix}'; use {', '.join(OUTPUTS)}")
    config = classifier.config
    columns, rows = iter_rows(source)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    written = 0
    try:
        reader = RowReader(source, columns, text_column=text_column, require_labels=False,
                           text_pair_column=text_pair_column or config.text_pair_column,
                           model_columns=(config.text_column, None))
        writer = _writer(output.suffix.lower(), tmp, columns, classifier)
        with progress_bar(total=_count_lines(source), unit="rows", smoothing=0.1, disable=quiet, desc="scoring") as bar:
            while chunk := list(itertools.islice(rows, chunk_rows)):
                parsed = [reader.read(i, row) for i, row in chunk]
                pairs = [p for _, p, _ in parsed] if reader.pair_col else None
                out = classifier.outputs([t for t, _, _ in parsed], pairs)
                writer.write([row for _, row in chunk], out)
                written += len(chunk)
                bar.update(len(chunk))
        writer.close()
        tmp.replace(output)
    except BaseException:
        rows.close()
        tmp.unlink(missing_ok=True)
        raise
    return written


def _count_lines(path: Path) -> int:
    """Rows for the progress bar: line ends, less the header (quoted line breaks make it an estimate)."""
    with open(path, "rb") as f:
        lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    return max(lines - (0 if path.suffix.lower() in (".jsonl", ".txt") else 1), 0)


def prediction_columns(space, out) -> dict:
    """What a scored file gains, one entry of N per column: predicted_label, confidence, predicted_labels
    (multi-label models: a list per row) and p_<label> per label. Used by predict --output and finebert.ray."""
    shown = space.shown(out)
    columns = {"predicted_label": shown.label, "confidence": shown.confidence}  # (N,) each
    if space.multi_label:
        columns["predicted_labels"] = shown.labels
    for k, name in enumerate(space.names):
        columns[f"p_{name}"] = out.probabilities[:, k]  # (N,)
    return columns


class _Writer:
    """Turns a chunk of input rows and their Outputs into output records."""

    def __init__(self, path: Path, columns: list[str], classifier):
        self.path, self.columns, self.space = path, columns, classifier.label_space

    def records(self, rows, out):
        added = prediction_columns(self.space, out)
        for i, row in enumerate(rows):
            values = row if isinstance(row, dict) else dict(zip(self.columns, row))
            extra = {"predicted_label": added["predicted_label"][i], "confidence": round(float(added["confidence"][i]), 6)}
            if self.space.multi_label:
                extra["predicted_labels"] = added["predicted_labels"][i]
            yield values, extra, out.probabilities[i]


class _CsvWriter(_Writer):
    def __init__(self, path, columns, classifier):
        super().__init__(path, columns, classifier)
        self.file = open(path, "w", encoding="utf-8", newline="")
        self.csv = csv.writer(self.file)
        self.added = ["predicted_label", "confidence"] + (["predicted_labels"] if self.space.multi_label else [])
        self.csv.writerow([*columns, *self.added, *(f"p_{n}" for n in self.space.names)])

    def write(self, rows, out):
        for values, extra, p in self.records(rows, out):
            cells = [_text(values.get(c)) for c in self.columns]
            added = [extra[k] if k != "predicted_labels" else (self.space.separator or ",").join(extra[k])
                     for k in self.added]
            self.csv.writerow([*cells, *added, *(f"{v:.6f}" for v in p)])

    def close(self):
        self.file.close()


class _JsonlWriter(_Writer):
    def __init__(self, path, columns, classifier):
        super().__init__(path, columns, classifier)
        self.file = open(path, "w", encoding="utf-8")

    def write(self, rows, out):
        names = self.space.names
        for values, extra, p in self.records(rows, out):
            record = {**values, **extra, "probabilities": {n: round(float(v), 6) for n, v in zip(names, p)}}
            self.file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self):
        self.file.close()


class _ParquetWriter(_Writer):
    def __init__(self, path, columns, classifier):
        super().__init__(path, columns, classifier)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtraError("pyarrow", "parquet") from None
        self.pa = pa
        fields = [pa.field(c, pa.string()) for c in columns]
        fields += [pa.field("predicted_label", pa.string()), pa.field("confidence", pa.float32())]
        if self.space.multi_label:
            fields.append(pa.field("predicted_labels", pa.list_(pa.string())))
        fields += [pa.field(f"p_{n}", pa.float32()) for n in self.space.names]
        self.schema = pa.schema(fields)
        self.parquet = pq.ParquetWriter(str(path), self.schema)

    def write(self, rows, out):
        records = list(self.records(rows, out))
        data = {c: [_text(values.get(c)) for values, _, _ in records] for c in self.columns}
        data["predicted_label"] = [extra["predicted_label"] for _, extra, _ in records]
        data["confidence"] = [extra["confidence"] for _, extra, _ in records]
        if self.space.multi_label:
            data["predicted_labels"] = [extra["predicted_labels"] for _, extra, _ in records]
        for k, name in enumerate(self.space.names):
            data[f"p_{name}"] = out.probabilities[:, k]
        self.parquet.write_table(self.pa.Table.from_pydict(data, schema=self.schema))  # one row group per chunk

    def close(self):
        self.parquet.close()


def _writer(suffix: str, path: Path, columns, classifier) -> _Writer:
    return {".csv": _CsvWriter, ".jsonl": _JsonlWriter, ".parquet": _ParquetWriter}[suffix](path, columns, classifier)


def _text(value) -> str | None:
    return value if isinstance(value, str) or value is None else json.dumps(value, ensure_ascii=False)
