import json

import numpy as np
import pytest

from finebert.errors import ModelError
from finebert.inference import Classifier

TEXTS = ["I really enjoyed the movie!", "a dull , lifeless and overlong mess", "ok", "the acting " * 40]


def test_save_load_gives_the_same_predictions(trained):
    clf, folder = trained
    again = Classifier.load(folder)
    assert again.labels == ["negative", "positive"]
    assert np.allclose(clf.predict_proba(TEXTS), again.predict_proba(TEXTS), atol=1e-5)
    assert again.predict(TEXTS) == clf.predict(TEXTS)


def test_folder_holds_hf_files_and_our_settings(trained):
    _, folder = trained
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "finebert.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    info = json.loads((folder / "finebert.json").read_text())
    assert info["schema_version"] == 2
    assert info["config"]["text_column"] == "review" and info["label_space"]["names"] == ["negative", "positive"]
    assert 0.5 < info["metrics"]["val_accuracy"] <= 1.0


def test_hugging_face_auto_classes_load_it_and_give_the_same_logits(tmp_path, reviews_csv, trained):
    """A [CLS]-pooled model (the fine-tune recipe's) loads in transformers' auto classes with the same logits.
    The session model (head-first: a normalised mean feeds its head) says that it does not."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import finebert
    from finebert.engines import score

    head_first = json.loads((trained[1] / "finebert.json").read_text())
    assert head_first["config"]["recipe"] == "head-first" and head_first["hf_sequence_classification"] is False
    assert json.loads((trained[1] / "config.json").read_text())["architectures"] == ["BertModel"]  # a bare encoder
    folder = tmp_path / "m"
    clf = finebert.train(reviews_csv, output=folder, recipe="fine-tune", epochs=0.2, quiet=True)
    assert json.loads((folder / "finebert.json").read_text())["hf_sequence_classification"] is True
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        theirs = hf(**tok(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits.numpy()
    ours = score(clf.engine, clf.tokenizer, clf.encode(TEXTS), 8)
    assert hf.config.id2label == {0: "negative", 1: "positive"}
    assert np.allclose(theirs, ours, atol=1e-4), np.abs(theirs - ours).max()


def test_predict_shapes_single_and_batch(trained):
    clf, _ = trained
    assert isinstance(clf.predict("great"), str)
    assert clf.predict_proba("great").shape == (2,)
    probs = clf.predict_proba(TEXTS)
    assert probs.shape == (4, 2) and np.allclose(probs.sum(1), 1.0)
    p = clf.classify("great")
    assert p.confidence == max(p.probabilities.values())


def test_folder_that_is_not_a_finebert_model(tmp_path, backbone):
    with pytest.raises(ModelError, match="not a finebert model"):
        Classifier.load(backbone)
    with pytest.raises(ModelError, match="no such model folder"):
        Classifier.load(tmp_path / "missing")


def test_mean_pooling_trains_and_round_trips(tmp_path, reviews_csv):
    import finebert

    clf = finebert.train(reviews_csv, output=tmp_path / "m", pooling="mean", epochs=0.2, quiet=True)
    again = Classifier.load(tmp_path / "m")
    assert again.engine.model.pooling == "mean"
    assert np.allclose(clf.predict_proba(TEXTS), again.predict_proba(TEXTS), atol=1e-5)


def test_any_local_bert_folder_works_as_backbone(tmp_path, backbone, reviews_csv):
    """A tiny randomly initialised BERT saved with save_pretrained, using the same vocabulary."""
    from transformers import BertConfig, BertModel

    import finebert

    tiny = tmp_path / "tiny-bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)).save_pretrained(tiny)
    (tiny / "vocab.txt").write_bytes((backbone / "vocab.txt").read_bytes())
    clf = finebert.train(reviews_csv, output=tmp_path / "m", model=str(tiny), epochs=0.5, quiet=True)
    assert Classifier.load(tmp_path / "m").engine.model.encoder.config.hidden_size == 32
    assert clf.predict("fine") in ("negative", "positive")


def test_loading_never_touches_the_network_and_never_unpickles(exported):
    """In a fresh process with sockets and every unpickler made to fail, loading and predicting still work."""
    import os
    import subprocess
    import sys

    code = """
import pickle, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("finebert tried the network or pickle")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse
class RefusingUnpickler(pickle.Unpickler):  # still a class: libraries subclass it at import
    __init__ = refuse
pickle.load = pickle.loads = refuse
pickle.Unpickler = RefusingUnpickler
import torch
torch.load = refuse
from finebert.inference import Classifier
for engine in ("pytorch", "onnx-fp32", "onnx-int8"):
    print(Classifier.load(sys.argv[1], engine=engine).predict("a fine film"))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}  # no offline flag to lean on
    result = subprocess.run([sys.executable, "-c", code, str(exported[0])], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 3


def test_scoring_batches_group_texts_of_similar_length(exported):
    """ONNX engines cut a batch where a longer chunk would pad it by more than max_added_padding tokens, so a
    server's micro-batch of short and long texts is not padded to its longest; every chunk is scored
    exactly once, with the logits it gets alone, whether batches run one after another or several at once, a
    thread each. PyTorch batches are only filled."""
    from finebert.engines import OnnxEngine, TorchEngine, length_batches, score

    limit = OnnxEngine.max_added_padding
    assert [list(b) for b in length_batches([40, 5, 41, 5, 6, 40], 32, limit)] == [[1, 3, 4], [0, 5, 2]]
    assert [list(b) for b in length_batches([40, 5, 41, 5, 6, 40], 4, TorchEngine.max_added_padding)] == [[1, 3, 4, 0], [5, 2]]
    lengths = np.random.default_rng(0).integers(3, 70, size=500)
    batches = length_batches(lengths, 16, limit)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500)) and max(map(len, batches)) == 16
    for batch in batches:
        steps = np.diff(lengths[batch])
        assert (steps >= 0).all() and (np.arange(1, len(batch)) * steps <= limit).all()

    clf = Classifier.load(exported[0], engine="onnx-fp32", threads=2)
    texts = ["great", "a dull , lifeless and overlong mess of a film that never ends", "ok", "I loved it !"]
    alone = np.concatenate([score(clf.engine, clf.tokenizer, clf.encode([t]), 32) for t in texts])
    assert clf.engine._one_thread is None  # one batch at a time: the session of every thread
    together = score(clf.engine, clf.tokenizer, clf.encode(texts), 32)  # two batches, one per thread at once
    assert clf.engine._one_thread is not None
    assert np.allclose(together, alone, atol=1e-5)
    many = clf.encode(texts * 50)  # 25 or more batches of 8, two at a time
    one_by_one = Classifier.load(exported[0], engine="onnx-fp32", threads=1)
    for engine in (clf.engine, one_by_one.engine):
        assert np.allclose(score(engine, clf.tokenizer, many, 8), np.tile(alone, (50, 1)), atol=1e-5)
    assert one_by_one.engine._one_thread is None
