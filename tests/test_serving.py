"""The real server process on a free loopback port, driven over HTTP (and by headless Chromium)."""

import concurrent.futures
import shutil
import subprocess
import sys

import httpx
import pytest
from conftest import cli, start_finebert

KEY = {"X-API-Key": "test-key"}


def start_server(folder, *extra):
    return start_finebert("serve", folder, *extra, ready="/health")


@pytest.fixture(scope="module")
def server(exported):
    proc, url = start_server(exported[0], "--api-key", "test-key")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_health_info_and_docs(server):
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    info = httpx.get(server + "/info", headers=KEY).json()
    assert info["labels"] == ["negative", "positive"] and info["engine"].startswith("onnx")
    assert "/predict" in httpx.get(server + "/openapi.json").json()["paths"]


def test_predict_returns_labels_confidences_and_probabilities(server):
    texts = ["I really enjoyed the movie!", "a dull , lifeless mess"]
    body = httpx.post(server + "/predict", json={"texts": texts}, headers=KEY).json()
    assert [p["text"] for p in body["predictions"]] == texts
    for p in body["predictions"]:
        assert p["label"] in ("negative", "positive")
        assert p["confidence"] == max(p["probabilities"].values())
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-3


@pytest.mark.parametrize("payload, status, fragment", [
    ({"texts": []}, 422, "texts is empty"),
    ({"text": "hi"}, 422, "texts"),
    ({"texts": [1, 2]}, 422, "valid string"),
    ({"texts": ["ok"] * 65}, 413, "limit is 64"),
    ({"texts": ["x" * 10_001]}, 413, "limit is 10000"),
    ({"texts": ["   "]}, 422, "texts[0] is empty"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(server, payload, status, fragment):
    r = httpx.post(server + "/predict", json=payload, headers=KEY)
    assert r.status_code == status and fragment in r.json()["error"]
    assert httpx.post(server + "/predict", json={"texts": ["fine"]}, headers=KEY).status_code == 200


def test_malformed_json_oversized_body_and_api_key(server):
    r = httpx.post(server + "/predict", content=b"{not json", headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    r = httpx.post(server + "/predict", content=b"x" * 1_100_000, headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(server + "/predict", json={"texts": ["hi"]})
    assert r.status_code == 401 and "X-API-Key" in r.json()["error"]
    assert httpx.post(server + "/predict", json={"texts": ["hi"]}, headers={"X-API-Key": "wrong"}).status_code == 401
    r = httpx.post(server + "/predict", content='{"texts": ["caf\u00e9"]}'.encode("latin-1"),
                   headers={**KEY, "content-type": "application/json"})  # é as one Latin-1 byte: not UTF-8
    assert r.status_code == 400 and "not valid UTF-8 (byte 15)" in r.json()["error"]


def test_concurrent_requests_are_all_answered_correctly(server):
    texts = [f"review number {i} was {'great' if i % 2 else 'awful'}" for i in range(48)]
    expected = httpx.post(server + "/predict", json={"texts": texts}, headers=KEY).json()["predictions"]
    with httpx.Client(headers=KEY) as client, concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: client.post(server + "/predict", json={"texts": [t]}).json(), texts))
    # int8 activations are quantized per batch, so batch mates move probabilities a little; no more.
    for answer, reference in zip(answers, expected):
        got = answer["predictions"][0]
        assert got["text"] == reference["text"]
        for label, p in reference["probabilities"].items():
            assert abs(got["probabilities"][label] - p) < 0.05


def test_workers_share_the_port_and_each_scores_with_its_own_model(exported):
    """--workers 2: two processes with a model each (one core's threads each) both answer, and answer alike."""
    import psutil

    from finebert.inference import Classifier

    proc, url = start_server(exported[0], "--workers", "2", "--engine", "onnx-fp32")
    try:
        workers = [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        busy_before = [sum(w.cpu_times()[:2]) for w in workers]
        texts = [f"film number {i} was {'wonderful' if i % 2 else 'a dreadful bore'}" for i in range(160)]

        def one(text):  # a new connection per request, so the kernel hands them out to both workers
            return httpx.post(url + "/predict", json={"texts": [text]}).json()["predictions"][0]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, texts))
        busy = [sum(w.cpu_times()[:2]) - b for w, b in zip(workers, busy_before)]
        assert min(busy) > 0.1, busy  # each worker scored some of them
        alone = Classifier.load(exported[0], engine="onnx-fp32", threads=1)
        for answer, probabilities in zip(answers, alone.predict_proba(texts)):
            for label, p in zip(alone.labels, probabilities):
                assert abs(answer["probabilities"][label] - p) < 1e-3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not any(w.is_running() for w in workers)  # stopping the server stops its workers


def test_workers_must_be_a_positive_count(exported):
    code, _, err = cli("serve", exported[0], "--workers", "0")
    assert code == 2 and "workers=0 is invalid" in err and "1 or more" in err


def test_without_the_serve_extra_one_line_says_so_and_nothing_claims_to_serve(exported, monkeypatch):
    monkeypatch.delitem(sys.modules, "finebert.serving", raising=False)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the [serve] extra were not installed
    code, out, err = cli("serve", exported[0])
    assert code == 2 and err.strip() == "error: fastapi is not installed; install it with: pip install 'finebert[serve]'"
    assert "serving" not in out + err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
def test_web_page_in_headless_chromium(exported, tmp_path):
    from PIL import Image

    proc, url = start_server(exported[0])
    try:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--window-size=900,700"]
        page = f"{url}/?text=I%20really%20enjoyed%20the%20movie!"
        dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
        assert 'data-state="done"' in dom, dom[-2000:]
        assert "confidence 0." in dom and "Labels: negative, positive" in dom
        shot = tmp_path / "page.png"
        subprocess.run([*flags, f"--screenshot={shot}", page], capture_output=True, timeout=120)
        import numpy as np

        image = np.asarray(Image.open(shot).convert("RGB"))
        assert image.shape == (700, 900, 3)
        blue = int((image == (0x2B, 0x7D, 0xE9)).all(axis=2).sum())  # pixels of the confidence bars
        assert blue > 2000, blue
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_batcher_survives_a_cancelled_request(trained):
    """A client that goes away mid-batch must not stop the batcher for everyone else."""
    import asyncio

    from finebert.serving import Limits, MicroBatcher

    async def scenario():
        batcher = MicroBatcher(trained[0], Limits(wait_ms=20))
        worker = asyncio.create_task(batcher.run())
        doomed = asyncio.create_task(batcher.predict(["gone"]))
        kept = asyncio.create_task(batcher.predict(["a wonderful film"]))
        await asyncio.sleep(0.005)
        doomed.cancel()
        first = await asyncio.wait_for(kept, 60)  # a dead batcher would hang here: fail instead
        second = await asyncio.wait_for(batcher.predict(["still serving"]), 60)
        worker.cancel()
        return first, second

    first, second = asyncio.run(scenario())
    assert first[0].text == "a wonderful film" and second[0].text == "still serving"


def test_multi_label_server_returns_every_label_over_its_threshold(emotions, tmp_path):
    """Thresholds live in the model folder; the server honours them (all labels pass at -100, only the top one
    at +100), and the web page shows several labels when there are several."""
    import json as _json

    _, folder, _ = emotions
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    info = _json.loads((copy / "finebert.json").read_text())
    info["label_space"]["thresholds"] = [-100.0] * 7
    (copy / "finebert.json").write_text(_json.dumps(info))
    proc, url = start_server(copy)
    try:
        text = "I am so happy for you, congratulations!"
        p = httpx.post(url + "/predict", json={"texts": [text]}).json()["predictions"][0]
        assert sorted(p["labels"]) == sorted(info["label_space"]["names"]) and p["label"] in p["labels"]
        assert httpx.get(url + "/info").json()["problem_type"] == "multi_label"
        if CHROMIUM:
            dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
                                  "--virtual-time-budget=15000", "--dump-dom", f"{url}/?text=so%20happy"],
                                 capture_output=True, text=True, timeout=120).stdout
            assert 'data-state="done"' in dom and "anger, disgust, fear, joy, neutral, sadness, surprise" in dom
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    single = emotions[0].classify(text)
    assert single.labels == emotions[0].predict(text)  # the trained thresholds: the same answer in process


def test_pair_server_takes_text_pair_objects(paraphrases):
    _, folder, _ = paraphrases
    proc, url = start_server(folder)
    try:
        item = {"text": "The cat sat on the mat .", "text_pair": "A cat sat on a mat ."}
        p = httpx.post(url + "/predict", json={"texts": [item]}).json()["predictions"][0]
        assert p["text_pair"] == item["text_pair"] and p["label"] in ("0", "1")
        assert abs(p["confidence"] - paraphrases[0].classify((item["text"], item["text_pair"])).confidence) < 1e-3
        r = httpx.post(url + "/predict", json={"texts": ["only one text"]})
        assert r.status_code == 422 and "classifies sentence pairs" in r.json()["error"]
        assert httpx.get(url + "/info").json()["text_pair"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_window_server_counts_chunks_not_only_texts(long_reviews):
    _, folder, _ = long_reviews
    proc, url = start_server(folder)
    try:
        review = ("This film drags on and on and never finds its footing, despite a fine cast. " * 120)[:9_900]
        ok = httpx.post(url + "/predict", json={"texts": [review]}, timeout=60)
        assert ok.status_code == 200  # about 45 chunks of 64 tokens
        r = httpx.post(url + "/predict", json={"texts": [review] * 8}, timeout=60)
        assert r.status_code == 413 and "chunks" in r.json()["error"] and "limit is 256" in r.json()["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
