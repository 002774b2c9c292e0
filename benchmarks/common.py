"""Shared by the benchmarks: SST-2 rows, and a fine-tuned SST-2 model to measure (trained once, cached)."""

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
CACHE = ROOT / "runs"  # ignored by git


def read_tsv(path, rows=None):
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        data = [(text, int(label)) for text, label in reader]
    return data[:rows] if rows else data


def sst2_model(folder=None) -> Path:
    """A model folder fine-tuned on SST-2 with ONNX engines: `folder`, or one trained on 8,000 rows and cached."""
    if folder:
        return Path(folder)
    folder = CACHE / "sst2-8k"
    if not (folder / "finebert.json").is_file():
        import finebert
        from finebert.data import Dataset
        from finebert.export import export

        texts, labels = zip(*read_tsv(SST2 / "train.tsv", 8000))
        print("training a benchmark model on 8,000 SST-2 rows (cached in runs/) ...", file=sys.stderr)
        finebert.train(Dataset(list(texts), [str(y) for y in labels], "sst2"), output=folder, quiet=True,
                       label_names=["negative", "positive"])
        export(folder, validate=SST2 / "dev.tsv")
    return folder
