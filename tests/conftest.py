"""Shared fixtures: the real default backbone, a tiny BERT built from its vocabulary, and one model
fine-tuned once per test session (the sentence-transformers way: load once, reuse everywhere)."""

import csv
import os
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sst2_rows(n: int, split: str = "train") -> list[tuple[str, str]]:
    """The first n rows of the real SST-2 file (sentence, label)."""
    with open(DATA / "sst2" / f"{split}.tsv", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [tuple(row) for _, row in zip(range(n), reader)]


@pytest.fixture(scope="session")
def backbone() -> Path:
    from finebert.config import DEFAULT_BACKBONE, resolve_backbone

    return resolve_backbone(DEFAULT_BACKBONE)


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory) -> Path:
    """Real SST-2 sentences under other column names and string labels: review, sentiment."""
    rows = [[text, "positive" if label == "1" else "negative"] for text, label in sst2_rows(400)]
    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", ["review", "sentiment"], rows)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, reviews_csv):
    """A model fine-tuned on 400 real reviews for one epoch, saved once: (Classifier, folder)."""
    import finebert

    folder = tmp_path_factory.mktemp("models") / "reviews"
    clf = finebert.train(reviews_csv, output=folder, text_column="review", label_column="sentiment",
                         epochs=1, batch_size=16, quiet=True)
    return clf, folder


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """A copy of the session model with both ONNX engines, validated on its training validation split."""
    from finebert.export import export

    _, folder = trained
    copy = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(folder, copy)
    info = export(copy)
    return copy, info
