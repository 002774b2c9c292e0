"""Every task shape on real data, through train, evaluate, predict, export and the HF auto classes:
imbalanced classes, multi-label emotions, long reviews in windows, and sentence pairs."""

import json

import numpy as np
import pytest

import finebert
from conftest import DATA, cli, data_rows, subset_file, write_csv
from finebert.engines import pool_chunks, score
from finebert.inference import Classifier
from finebert.tokenization import Tokenizer



def run(*args) -> str:
    """The standard output of `finebert ARGS` (run in this process: conftest.cli), which must succeed."""
    return cli(*args, check=True).stdout


# -- imbalance ---------------------------------------------------------------------------------------

def test_imbalanced_spam_uses_class_weights_and_picks_the_epoch_on_macro_f1(tmp_path):
    data = subset_file(tmp_path, "sms_spam/sms_spam.csv", 500)  # 13% spam, as the whole file
    clf = finebert.train(data, class_weights="auto", epochs=2, max_length=48, quiet=True)
    assert clf.metrics["selected_on"] == "macro_f1"
    assert clf.metrics["val_macro_f1"] == max(h["val_macro_f1"] for h in clf.history)
    assert clf.config.class_weights == "auto"
    header, rows = data_rows("sms_spam/sms_spam.csv", 1700)
    unseen = write_csv(tmp_path / "unseen.csv", header, rows[500:])  # the 1,200 rows after the training rows
    report = finebert.evaluate(clf, unseen)
    spam = sum(row[header.index("label")] == "spam" for row in rows[500:])
    assert set(report.per_class) == {"ham", "spam"} and report.per_class["spam"]["support"] == spam > 120
    assert report.per_class["spam"]["recall"] > 0.5  # an unweighted 2-epoch model on 500 rows can miss all spam


def test_balanced_data_picks_the_epoch_on_accuracy(reviews_csv):
    clf = finebert.train(reviews_csv, epochs=1, max_length=32, quiet=True)
    assert clf.metrics["selected_on"] == "accuracy"


# -- multi-label -------------------------------------------------------------------------------------

def test_multi_label_model_predicts_label_lists_with_tuned_thresholds(emotions):
    clf, folder, _ = emotions
    assert clf.label_space.multi_label
    assert clf.labels == ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    assert len(set(clf.label_space.thresholds)) > 1  # tuned per label on the held-out rows
    texts = ["I am so happy for you, congratulations!", "This is disgusting and it makes me furious"]
    answers = clf.predict(texts)
    assert all(isinstance(a, list) and a and set(a) <= set(clf.labels) for a in answers)
    probs = clf.predict_proba(texts)
    assert probs.shape == (2, 7) and not np.allclose(probs.sum(1), 1.0)  # independent sigmoids, not a softmax
    for p in clf.classify(texts):  # every label over its threshold, and the top label is among them
        assert p.label in p.labels and p.confidence == p.probabilities[p.label]


def test_multi_label_top_label_is_the_most_probable_of_those_predicted(emotions):
    """The most probable label under a threshold it does not reach is not predicted, so it is not `label` either."""
    clf = emotions[0]
    text = "I am so happy for you, congratulations!"
    logits = clf.logits([text])[0]  # (C,)
    first, second = np.argsort(-logits)[:2]
    saved = list(clf.label_space.thresholds)
    try:
        clf.label_space.thresholds = [float(z) + 1.0 for z in logits]  # nothing passes ...
        clf.label_space.thresholds[second] = float(logits[second]) - 1.0  # ... but the second most probable
        p = clf.classify(text)
    finally:
        clf.label_space.thresholds = saved
    assert p.labels == [clf.labels[second]] and p.label == clf.labels[second]
    assert p.confidence == p.probabilities[clf.labels[second]] < p.probabilities[clf.labels[first]]


def test_multi_label_cli_evaluate_and_predict(emotions):
    clf, folder, data = emotions
    dev = subset_file(folder.parent, "goemotions/dev.tsv", 1500, "dev.csv")
    report = json.loads(run("evaluate", folder, dev, "--json"))
    assert report["problem_type"] == "multi_label" and report["confusion_matrix"] is None and report["examples"] == 1500
    assert set(report["per_class"]) == set(clf.labels) and report["per_class"]["neutral"]["support"] > 300
    assert 0 < report["f1"] <= report["micro_f1"] <= 1  # rare emotions pull macro-F1 below micro-F1
    table = run("evaluate", folder, data)
    assert "macro-F1" in table and "per class" in table and "surprise" in table
    out = json.loads(run("predict", folder, "--json", "wow, I did not expect that!"))
    assert isinstance(out[0]["labels"], list) and out[0]["label"] in out[0]["labels"]


def test_multi_label_folder_loads_in_hugging_face_with_the_same_logits(emotions):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    clf, folder, _ = emotions
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert hf.config.problem_type == "multi_label_classification"
    texts = ["I am so happy for you!", "that is scary"]
    with torch.no_grad():
        theirs = hf(**AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")).logits.numpy()
    assert np.allclose(theirs, clf.logits(texts), atol=1e-4)


def test_jsonl_label_lists_train_a_multi_label_model_without_a_flag(tmp_path):

    _, rows = data_rows("goemotions/train.tsv", 80)
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps({"text": t, "labels": labels.split(",")}) + "\n" for t, labels in rows))
    clf = finebert.train(path, epochs=0.5, max_length=32, quiet=True)
    assert clf.label_space.multi_label and isinstance(clf.predict("hello"), list)


# -- long documents ----------------------------------------------------------------------------------

def long_review() -> str:

    _, rows = data_rows("imdb/test.csv", 200)
    return max((r[0] for r in rows), key=len)


def test_window_chunks_cover_the_text_and_overlap_by_the_stride(backbone):
    tok = Tokenizer(backbone, max_length=64)
    text = long_review()
    body = tok.encode([text], long_text="window", stride=16)
    whole = tok._full.encode(text, add_special_tokens=False).ids
    assert len(whole) > 300 and body.n_docs == 1 and len(body.ids) == int(np.ceil((len(whole) - 16) / 46))
    rebuilt = body.ids[0][1:-1]
    for prev, chunk in zip(body.ids, body.ids[1:]):
        assert chunk[0] == 101 and chunk[-1] == 102 and len(chunk) <= 64
        assert chunk[1:17] == prev[-17:-1]  # the first 16 tokens repeat the previous chunk's last 16
        rebuilt += chunk[17:-1]
    assert rebuilt == whole  # nothing lost, nothing added


def test_head_tail_keeps_the_first_quarter_and_the_last_three_quarters(backbone):
    tok = Tokenizer(backbone, max_length=42)
    text = long_review()
    whole = tok._full.encode(text, add_special_tokens=False).ids
    (ids,) = tok.encode([text], long_text="head-tail").ids
    assert len(ids) == 42 and ids[1:11] == whole[:10] and ids[11:-1] == whole[-30:]
    assert tok.encode(["short text"], long_text="head-tail").ids == tok.encode(["short text"]).ids


def test_pooling_chunks_is_the_same_in_numpy_and_torch():
    import torch

    logits = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    starts = np.array([0, 2, 3, 6])
    for how, reduce in (("mean", np.mean), ("max", np.max)):
        expected = np.stack([reduce(logits[a:b], axis=0) for a, b in zip(starts, starts[1:])])
        assert np.allclose(pool_chunks(logits, starts, how), expected, atol=1e-6)
        assert np.allclose(pool_chunks(torch.from_numpy(logits), starts, how).numpy(), expected, atol=1e-6)


def test_window_model_scores_a_text_as_the_mean_of_its_chunks(long_reviews):
    clf, folder, data = long_reviews
    text = long_review()
    encoded = clf.encode([text])
    assert len(encoded.ids) > 3
    per_chunk = clf.engine.logits(clf.tokenizer.pad(encoded.ids))  # (chunks, C)
    assert np.allclose(clf.logits([text])[0], per_chunk.mean(axis=0), atol=1e-4)
    assert np.allclose(score(clf.engine, clf.tokenizer, encoded, 2, "max")[0], per_chunk.max(axis=0), atol=1e-4)
    again = Classifier.load(folder)
    assert again.config.long_text == "window" and again.config.stride == 16
    assert np.allclose(again.predict_proba(text), clf.predict_proba(text), atol=1e-5)


def test_window_model_through_the_cli(long_reviews):
    _, folder, data = long_reviews
    report = json.loads(run("evaluate", folder, data, "--json"))
    assert report["examples"] == 48 and report["labels"] == ["negative", "positive"]


# -- sentence pairs ----------------------------------------------------------------------------------

def test_pairs_are_encoded_with_segment_ids(backbone):
    enc = Tokenizer(backbone).encode(["a man plays"], ["someone is playing"])
    assert enc.ids[0] == [101, 1037, 2158, 3248, 102, 2619, 2003, 2652, 102]
    assert enc.type_ids[0] == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_pair_model_uses_both_texts_and_their_segments(paraphrases):
    clf, _, _ = paraphrases
    a, b = "The cat sat on the mat .", "A cat was sitting on the mat ."
    assert clf.pairs and clf.predict((a, b)) in ("0", "1")
    assert np.allclose(clf.predict_proba([(a, b)]), clf.predict_proba([a], pairs=[b]))
    encoded = clf.encode([a], [b])
    batch = clf.tokenizer.pad(encoded.ids, encoded.type_ids)
    flat = dict(batch, token_type_ids=np.zeros_like(batch["token_type_ids"]))
    assert not np.allclose(clf.engine.logits(batch), clf.engine.logits(flat))  # segment ids reach the model
    with pytest.raises(finebert.errors.ConfigError, match="classifies sentence pairs"):
        clf.predict(a)


def test_pair_model_through_the_cli(paraphrases, tmp_path):
    clf, folder, data = paraphrases
    out = json.loads(run("predict", folder, "--json", "The cat sat on the mat .", "--text-pair", "A cat sat on a mat ."))
    assert out[0]["text_pair"] == "A cat sat on a mat ." and out[0]["label"] in ("0", "1")
    report = json.loads(run("evaluate", folder, DATA / "mrpc" / "dev.csv", "--json"))
    assert report["examples"] == 400
    scored = json.loads(run("predict", folder, "--file", DATA / "mrpc" / "dev.csv", "--json"))
    assert len(scored) == 400 and scored[0]["text_pair"]
    assert json.loads((folder / "finebert.json").read_text())["config"]["text_pair_column"] == "sentence2"


def test_pair_model_exports_to_onnx_with_segment_ids(paraphrases, tmp_path):
    import shutil

    from finebert.export import export

    _, folder, _ = paraphrases
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    export(copy, int8=False)
    texts, pairs = ["The cat sat on the mat .", "Stocks fell sharply ."], ["A cat sat on a mat .", "It rained ."]
    onnx, torch_ = Classifier.load(copy, engine="onnx-fp32"), Classifier.load(copy, engine="pytorch")
    assert "token_type_ids" in onnx.engine.inputs
    assert np.allclose(onnx.logits(texts, pairs), torch_.logits(texts, pairs), atol=1e-4)
