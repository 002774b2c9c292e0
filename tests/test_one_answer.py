"""One answer per text: every path names the labels LabelSpace.shown decides, and first the most probable of them.

A multi-label model whose thresholds and per-label temperatures are set so that the most probable label is often
not a decided one: a path that took the highest probability would name a label the others do not show."""

import json
import shutil

import numpy as np
import pytest

from conftest import cli, write_csv


@pytest.fixture(scope="module")
def tricky(emotions, tmp_path_factory):
    """A copy of the multi-label model whose most frequent top label is never decided (threshold far above every
    logit), other thresholds low enough that several labels pass, and a temperature per label:
    (folder, texts, its PyTorch classifier)."""
    from finebert import model_folder
    from finebert.inference import Classifier

    _, folder, data = emotions
    copy = tmp_path_factory.mktemp("tricky") / "model"
    shutil.copytree(folder, copy)
    with open(data, encoding="utf-8") as f:
        texts = [line.split("\t")[0] for line in f.read().splitlines()[1:41]]
    logits = Classifier.load(copy, engine="pytorch").logits(texts)  # (40, C)
    busiest = int(np.bincount(logits.argmax(1), minlength=logits.shape[1]).argmax())
    info = model_folder.read_info(copy)
    info.label_space.thresholds = [1e6 if k == busiest else float(np.quantile(logits[:, k], 0.5))
                                   for k in range(logits.shape[1])]
    for engine in info.calibration:  # temperatures that reorder the probabilities against the logits
        info.calibration[engine]["temperature"] = [0.4 + 0.35 * k for k in range(logits.shape[1])]
    model_folder.write_info(copy, info)
    return copy, texts, Classifier.load(copy, engine="pytorch")


def test_every_path_names_the_same_labels_and_first_the_most_probable_decided_one(tricky, tmp_path):
    from fastapi.testclient import TestClient

    from finebert.ray import _Scorer
    from finebert.serving import create_app

    folder, texts, clf = tricky
    predictions = clf.classify(texts)
    labels = [p.labels for p in predictions]
    first = [p.label for p in predictions]
    probabilities = clf.predict_proba(texts)  # (40, C)
    # the case this guards: the most probable label is not decided, so "the highest probability" would differ
    assert sum(clf.labels[int(row.argmax())] not in chosen for row, chosen in zip(probabilities, labels)) >= 5
    for p, row in zip(predictions, probabilities):
        decided = [clf.labels.index(name) for name in p.labels]
        assert p.label in p.labels and p.confidence == pytest.approx(max(row[decided]), abs=1e-4)
    assert clf.predict(texts) == labels

    source = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in texts])
    shown = json.loads(cli("predict", folder, "--file", source, "--json", "--engine", "pytorch", check=True).stdout)
    assert [p["labels"] for p in shown] == labels and [p["label"] for p in shown] == first

    scored = tmp_path / "scored.jsonl"
    cli("predict", folder, "--file", source, "--output", scored, "--engine", "pytorch", "--quiet", check=True)
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [r["predicted_labels"] for r in rows] == labels and [r["predicted_label"] for r in rows] == first

    batch = _Scorer(str(folder), "pytorch", "text", None)({"text": np.array(texts, dtype=object)})  # a Ray actor's work
    assert list(batch["predicted_label"]) == first and [list(x) for x in batch["predicted_labels"]] == labels

    with TestClient(create_app(clf)) as client:
        served = client.post("/predict", json={"texts": texts}).json()["predictions"]
    assert [p["labels"] for p in served] == labels and [p["label"] for p in served] == first

    explained = clf.explain(texts[:3])  # attributions towards the label shown first
    assert [e.label for e in explained] == first[:3]
