"""Shared fixtures: the real default backbone, a tiny BERT built from its vocabulary, and one model
fine-tuned once per test session (the sentence-transformers way: load once, reuse everywhere)."""

import contextlib
import csv
import io
import os
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time


class CliResult(NamedTuple):
    """What a command gave: exit code, standard output, standard error (unpacks as a tuple too)."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args, stdin: str | None = None, check: bool = False) -> CliResult:
    """Runs `finebert ARGS` in this process through `finebert.cli.main`, the console script's own entry
    point: the same code as the installed command, without paying its 6 s of torch and transformers
    imports again per call. test_cli.py runs the installed console script itself, in a child process."""
    from finebert.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, stdin_before = sys.argv, sys.stdin
    sys.argv = ["finebert", *map(str, args)]
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.stdin = argv, stdin_before
    result = CliResult(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"finebert {' '.join(map(str, args))} exited with {code}: {result.stderr[-2000:]}")
    return result


def free_port() -> int:
    """A TCP port nobody listens on now (for servers started by tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_finebert(*args, ready: str, tries: int = 240):
    """`finebert ARGS --port P` in a child process; (process, url) once GET `ready` answers 200 (or 401: a key is
    needed). The process's output is the error if it exits first."""
    import subprocess
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "finebert"), *map(str, args), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(tries):
        try:
            if httpx.get(url + ready, timeout=1).status_code in (200, 401):
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read())
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"finebert {args[0]} did not start in {tries / 4:.0f} s")


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def data_rows(relative: str, n: int) -> tuple[list[str], list[list[str]]]:
    """(header, the first n rows) of a real data file under ../shared/data (CSV, or TSV without quoting)."""
    path = DATA / relative
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if path.suffix == ".tsv" else csv.reader(f)
        header = next(reader)
        return header, [row for _, row in zip(range(n), reader)]


def subset_file(folder: Path, relative: str, n: int, name: str | None = None) -> Path:
    """The first n rows of a real data file, written as CSV into a temporary folder."""
    header, rows = data_rows(relative, n)
    return write_csv(folder / (name or Path(relative).with_suffix(".csv").name), header, rows)


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
def tiny_backbone(tmp_path_factory, backbone) -> Path:
    """A tiny randomly initialised BERT (2 layers, 64 wide) with the real vocabulary: for tests of the
    training machinery (checkpoints, resume, processes) that need many short runs, not accuracy."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                         max_position_embeddings=128)).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).write_bytes((backbone / name).read_bytes())
    return folder


@pytest.fixture(scope="session")
def families(tmp_path_factory) -> dict[str, Path]:
    """A tiny backbone of every supported family (tests/families.py), built once: {family: folder}."""
    from families import FAMILIES, build

    texts = [text for text, _ in sst2_rows(400)]
    return {name: build(name, tmp_path_factory.mktemp(f"tiny-{name}"), texts) for name in FAMILIES}


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory) -> Path:
    """Real SST-2 sentences under other column names and string labels: review, sentiment."""
    rows = [[text, "positive" if label == "1" else "negative"] for text, label in sst2_rows(400)]
    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", ["review", "sentiment"], rows)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, reviews_csv):
    """A model fine-tuned on 400 real reviews for one epoch through the CLI, other column names and
    string labels included, saved once: (Classifier, folder)."""
    from finebert.inference import Classifier

    folder = tmp_path_factory.mktemp("models") / "reviews"
    result = cli("train", reviews_csv, "--output", folder, "--text-column", "review", "--label-column", "sentiment",
                 "--epochs", "1", "--batch-size", "16", "--quiet", check=True)
    assert "labels: negative, positive" in result.stdout  # what the CLI says when it is done
    return Classifier.load(folder), folder


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """A copy of the session model with both ONNX engines, validated on its training validation split."""
    from finebert.export import export

    _, folder = trained
    copy = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(folder, copy)
    info = export(copy)
    return copy, info


@pytest.fixture(scope="session")
def emotions(tmp_path_factory):
    """A multi-label model on 600 real GoEmotions rows (7 emotions, label names joined by ','), trained
    through the CLI: (Classifier, folder, the data file)."""
    from finebert.inference import Classifier

    tmp = tmp_path_factory.mktemp("emotions")
    data = subset_file(tmp, "goemotions/train.tsv", 600)
    folder = tmp / "model"
    cli("train", data, "--output", folder, "--multi-label", "--epochs", "2", "--max-length", "48", "--quiet", check=True)
    return Classifier.load(folder), folder, data


@pytest.fixture(scope="session")
def paraphrases(tmp_path_factory):
    """A sentence-pair model on 400 real MRPC rows (sentence1, sentence2, label), trained through the
    CLI with --text-pair-column: (Classifier, folder, data)."""
    from finebert.inference import Classifier

    tmp = tmp_path_factory.mktemp("mrpc")
    data = subset_file(tmp, "mrpc/train.csv", 400)
    folder = tmp / "model"
    cli("train", data, "--output", folder, "--text-pair-column", "sentence2", "--epochs", "1", "--max-length", "96",
        "--quiet", check=True)
    return Classifier.load(folder), folder, data


@pytest.fixture(scope="session")
def long_reviews(tmp_path_factory):
    """A long-text model (overlapping 64-token windows) on 48 real IMDB reviews: (Classifier, folder, data).
    Its tests check chunking, pooling and limits, not accuracy, so few reviews do."""
    import finebert

    tmp = tmp_path_factory.mktemp("imdb")
    data = subset_file(tmp, "imdb/train.csv", 48)
    folder = tmp / "model"
    clf = finebert.train(data, output=folder, long_text="window", max_length=64, stride=16, epochs=1, quiet=True)
    return clf, folder, data


@pytest.fixture(scope="session")
def sst2_model():
    """A real SST-2 sentiment model: 2,000 training sentences, one epoch (labels negative, positive)."""
    import finebert
    from finebert.data import Dataset

    texts, labels = zip(*sst2_rows(2000))
    return finebert.train(Dataset(list(texts), list(labels), "sst2"), label_names=["negative", "positive"],
                          epochs=1, max_length=64, quiet=True)
