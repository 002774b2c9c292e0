"""Every path on every backbone family: BERT, DistilBERT, RoBERTa, MPNet, DeBERTa-v2, ELECTRA and ModernBERT, each a
tiny random checkpoint with its own kind of tokenizer (tests/families.py). Accuracy is not the point; that every
path runs, and that the paths agree, is."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, data_rows, sst2_rows, subset_file, write_csv
from families import FAMILIES

FINEBERT = str(Path(sys.executable).parent / "finebert")
FAST = dict(epochs=1, max_length=48, quiet=True, seed=3)  # a few seconds a training on a tiny backbone


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, families):
    return request.param, families[request.param]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    """48 SST-2 training sentences and 40 dev sentences, named labels: (train, dev)."""
    folder = tmp_path_factory.mktemp("sentiment")
    name = lambda y: "positive" if y == "1" else "negative"  # noqa: E731
    train = write_csv(folder / "train.csv", ["text", "label"], [[t, name(y)] for t, y in sst2_rows(48)])
    dev = write_csv(folder / "dev.csv", ["text", "label"], [[t, name(y)] for t, y in sst2_rows(40, "dev")])
    return train, dev


@pytest.fixture(scope="module")
def family_model(family, sentiment, tmp_path_factory):
    """A default-recipe model of the family, its ONNX engines exported through the accuracy guard:
    (family, folder, dev texts)."""
    import finebert
    from finebert.export import export

    name, backbone = family
    train, dev = sentiment
    folder = tmp_path_factory.mktemp(f"model-{name}") / "model"
    finebert.train(train, output=folder, validation=dev, model=str(backbone), **FAST)
    export(folder)
    return name, folder, [text for text, _ in sst2_rows(40, "dev")]  # dev.csv's texts


def test_every_engine_gives_the_pytorch_models_answers(family_model):
    from finebert.inference import Classifier
    from finebert.model_folder import read_info

    _, folder, texts = family_model  # texts: the validation data the export guard measured on
    engines = read_info(folder).engines
    pytorch = Classifier.load(folder, engine="pytorch")
    np.testing.assert_allclose(Classifier.load(folder, engine="onnx-fp32").logits(texts), pytorch.logits(texts),
                               atol=1e-4)
    assert engines["onnx-fp32"]["validated"]
    # int8 rounds (more on AVX2, whose kernels lack VNNI); the guard measured how far, and decided on it
    apart = np.abs(Classifier.load(folder, engine="onnx-int8").predict_proba(texts) - pytorch.predict_proba(texts))
    assert apart.max() == pytest.approx(engines["onnx-int8"]["max_prob_diff"], abs=1e-3)
    assert (Classifier.load(folder).engine.name == "onnx-int8") == engines["onnx-int8"]["validated"]


def test_evaluate_calibrate_and_explain(family_model, sentiment):
    import finebert
    from finebert.calibration import recalibrate
    from finebert.inference import Classifier

    _, folder, texts = family_model
    report = finebert.evaluate(Classifier.load(folder), sentiment[1])
    assert report.examples == 40 and 0 <= report.accuracy <= 1 and np.sum(report.confusion_matrix) == 40
    info = recalibrate(folder, sentiment[1])
    assert {"pytorch", "onnx-fp32", "onnx-int8"} <= set(info.calibration)
    clf = Classifier.load(folder, engine="pytorch")
    explained = clf.explain(texts[0])
    assert explained.label == clf.predict(texts[0]) and len(explained.words) >= len(texts[0].split()) // 2
    assert np.isfinite(explained.scores).all() and np.abs(explained.scores).sum() > 0


def test_served_streamed_and_ray_answers_are_the_librarys(family_model, tmp_path):
    from fastapi.testclient import TestClient

    from finebert.inference import Classifier
    from finebert.ray import _Scorer
    from finebert.serving import create_app

    _, folder, texts = family_model
    clf = Classifier.load(folder)  # the engine auto chose
    expected = [p.to_dict() for p in clf.classify(texts)]
    with TestClient(create_app(clf)) as client:
        assert client.post("/predict", json={"texts": texts}).json()["predictions"] == expected
    source = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in texts])
    cli("predict", folder, "--file", source, "--output", tmp_path / "out.jsonl", "--quiet", check=True)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["predicted_label"] for r in rows] == [p["label"] for p in expected]
    batch = _Scorer(str(folder), "auto", "text", None)({"text": np.array(texts, dtype=object)})
    assert list(batch["predicted_label"]) == [p["label"] for p in expected]


@pytest.mark.parametrize("recipe", ["few-shot", "head-first", "fine-tune"])
def test_each_recipe_loads_in_hugging_face_with_finebert_probabilities_or_is_refused(family, sentiment, recipe,
                                                                                      tmp_path):
    """Hugging Face's auto classes and pipeline compute finebert's logits (BERT, [CLS] pooling), or refuse the
    folder saying why: never a model that answers otherwise."""
    import finebert
    from finebert.model_folder import read_info
    from transformers import AutoModelForSequenceClassification, pipeline

    name, backbone = family
    folder = tmp_path / "model"
    clf = finebert.train(sentiment[0], output=folder, recipe=recipe, model=str(backbone), **FAST)
    claim = read_info(folder).hf_sequence_classification
    assert claim == (name == "bert" and recipe == "fine-tune")  # the recipes that pool [CLS] on BERT alone
    texts = [t for t, _ in sst2_rows(12, "dev")]
    ours = clf.label_space.postprocess(clf.logits(texts)).probabilities  # (12, 2), no temperature: HF has none
    if claim:
        answers = pipeline("text-classification", model=str(folder), top_k=None)(texts)
        theirs = np.array([[next(a["score"] for a in row if a["label"] == label) for label in clf.labels]
                           for row in answers])
        np.testing.assert_allclose(theirs, ours, atol=1e-4)
    else:
        for load in (lambda: AutoModelForSequenceClassification.from_pretrained(str(folder)),
                     lambda: pipeline("text-classification", model=str(folder))):
            with pytest.raises(ValueError, match="finebert-only: Hugging Face's auto classes would compute other"):
                load()


@pytest.mark.parametrize("shape", ["long texts", "pairs", "multi-label"])
def test_long_texts_pairs_and_multi_label_train_save_and_load_alike(family, shape, tmp_path):
    import finebert
    from finebert.inference import Classifier

    name, backbone = family
    settings = {"long texts": dict(long_text="window", max_length=32, stride=8),
                "pairs": dict(text_pair_column="sentence2"),
                "multi-label": dict(multi_label=True)}[shape]
    source = {"long texts": ("imdb/train.csv", 16), "pairs": ("mrpc/train.csv", 40),
              "multi-label": ("goemotions/train.tsv", 60)}[shape]
    data = subset_file(tmp_path, *source)
    folder = tmp_path / "model"
    clf = finebert.train(data, output=folder, model=str(backbone), **(FAST | settings))
    header, rows = data_rows(*source)
    texts = [row[header.index("sentence1" if shape == "pairs" else "text")][:2000] for row in rows[:6]]
    pairs = [row[header.index("sentence2")] for row in rows[:6]] if shape == "pairs" else None
    loaded = Classifier.load(folder, engine="pytorch")
    np.testing.assert_allclose(loaded.predict_proba(texts, pairs), clf.predict_proba(texts, pairs), atol=1e-5)
    if shape == "long texts":
        assert len(loaded.encode(texts).ids) > 2 * len(texts)  # scored over several windows each
    if shape == "multi-label":
        assert loaded.label_space.multi_label and all(isinstance(labels, list) for labels in loaded.predict(texts))


def test_audit_scores_every_row_out_of_fold(family, sentiment):
    import finebert

    _, backbone = family
    result = finebert.audit(sentiment[0], folds=2, epochs=1, quiet=True, model=str(backbone), max_length=48)
    assert result.probabilities.shape == (48, 2) and np.allclose(result.probabilities.sum(1), 1, atol=1e-5)
    assert len(result.scores) == 48 and ((0 <= result.scores) & (result.scores <= 1)).all()


def test_two_processes_train_the_one_process_model(family, sentiment, tmp_path):
    """DistributedDataParallel on 2 processes (gloo): the same model as one process, to float rounding (fp32)."""
    from finebert.inference import Classifier

    _, backbone = family
    common = ["--model", backbone, "--recipe", "fine-tune", "--epochs", "1", "--max-length", "48", "--seed", "3",
              "--precision", "fp32", "--batch-size", "8", "--quiet"]
    cli("train", sentiment[0], "--output", tmp_path / "one", *common, check=True)
    two = subprocess.run([FINEBERT, "train", str(sentiment[0]), "--output", str(tmp_path / "two"), *map(str, common),
                          "--nproc", "2"], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    texts = [t for t, _ in sst2_rows(20, "dev")]
    np.testing.assert_allclose(Classifier.load(tmp_path / "two", engine="pytorch").predict_proba(texts),
                               Classifier.load(tmp_path / "one", engine="pytorch").predict_proba(texts), atol=1e-4)


def test_a_backbone_with_pickled_weights_only_is_refused_before_any_work(families, sentiment, tmp_path):
    import torch
    from transformers import AutoModel

    folder = tmp_path / "pickled"
    shutil.copytree(families["roberta"], folder)
    torch.save(AutoModel.from_pretrained(str(folder)).state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    result = cli("train", sentiment[0], "--output", tmp_path / "out", "--model", folder)
    assert result.returncode == 2 and "only in pickle files (.bin), which finebert never loads" in result.stderr
    assert not (tmp_path / "out").exists()
