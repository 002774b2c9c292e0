"""Explanations: integrated gradients on the word embeddings, merged to words, from the library, the CLI,
the server and the web page."""

import json
import subprocess

import httpx
import numpy as np

from conftest import cli
from test_serving import CHROMIUM, start_server



def test_enjoyed_carries_the_largest_positive_attribution(sst2_model):
    e = sst2_model.explain("I really enjoyed the movie!")
    assert e.label == "positive" and e.words == ["I", "really", "enjoyed", "the", "movie", "!"]
    assert e.words[int(np.argmax(e.scores))] == "enjoyed" and max(e.scores) > 0


def test_attributions_add_up_to_the_logit_change_from_the_baseline(sst2_model):
    """Completeness: integrated gradients split f(text) - f(baseline) among the tokens."""
    import torch

    text = "a dull , lifeless and overlong mess"
    e = sst2_model.explain(text, label="negative")
    model, tok = sst2_model.torch_model(), sst2_model.tokenizer
    ids = torch.tensor(tok.encode([text]).ids)
    baseline = torch.full_like(ids, tok.pad_id)
    baseline[0, 0], baseline[0, -1] = ids[0, 0], ids[0, -1]
    with torch.no_grad():
        change = (model(ids, torch.ones_like(ids)) - model(baseline, torch.ones_like(ids)))[0, 0].item()
    assert abs(sum(e.scores) - change) < 0.05 * abs(change) + 0.02
    other = sst2_model.explain(text, label="positive")
    assert np.corrcoef(e.scores, other.scores)[0, 1] < -0.9  # the other class: the mirror image


def test_long_texts_are_explained_over_every_chunk(long_reviews):
    clf, _, _ = long_reviews
    text = " ".join(["The plot is thin but the acting is wonderful."] * 40)  # about 480 tokens: 10 windows of 64
    e = clf.explain(text)
    assert len(e.words) == len(text.replace(".", " .").split())
    assert np.count_nonzero(e.scores[-20:]) == 20  # the last window's words are attributed too


def test_pairs_are_explained_across_both_texts(paraphrases):
    clf, _, _ = paraphrases
    e = clf.explain(("The cat sat on the mat .", "A cat sat on a mat ."))
    assert e.words == ["The", "cat", "sat", "on", "the", "mat", ".", "[SEP]", "A", "cat", "sat", "on", "a", "mat", "."]
    assert e.text_pair == "A cat sat on a mat ." and e.scores[7] == 0


def test_explain_cli(exported):
    out = cli("explain", exported[0], "I really enjoyed the movie!", "--json", check=True).stdout
    e = json.loads(out)[0]
    assert e["words"][2] == "enjoyed" and len(e["scores"]) == 6
    text = cli("explain", exported[0], "a dull mess", check=True).stdout
    assert "strongest:" in text and "dull" in text


def test_explain_endpoint_and_page(exported, tmp_path):
    proc, url = start_server(exported[0])  # an ONNX engine: explanations load the PyTorch model once
    try:
        r = httpx.post(url + "/explain", json={"texts": ["I really enjoyed the movie!"]}, timeout=60)
        e = r.json()["explanations"][0]
        assert r.status_code == 200 and e["words"][2] == "enjoyed" and e["label"] in ("negative", "positive")
        r = httpx.post(url + "/explain", json={"texts": ["hi"] * 9}, timeout=60)
        assert r.status_code == 413 and "limit is 8" in r.json()["error"]
        r = httpx.post(url + "/explain", json={"texts": ["hi"], "label": "eggs"}, timeout=60)
        assert r.status_code == 422 and "eggs" in r.json()["error"]
        if CHROMIUM:
            dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
                                  "--virtual-time-budget=30000", "--dump-dom", f"{url}/?text=I%20really%20enjoyed%20it"],
                                 capture_output=True, text=True, timeout=120).stdout
            body = dom.split("<script>")[0]  # the page's own script mentions data-score too
            assert 'data-explained="yes"' in body and body.count("data-score=") == 4
    finally:
        proc.terminate()
        proc.wait(timeout=10)
