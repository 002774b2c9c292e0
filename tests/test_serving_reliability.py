"""The server stays up and correct under bad requests, odd clients and failures inside the model.

Most cases run against a real `finebert serve` process over loopback (start_server). Three cannot be made
to happen with a healthy model, so they run the real app in process with a fault put in on purpose:
an engine that raises, one that hangs, and a model worker that has died.
"""

import concurrent.futures
import socket
import time

import httpx
import pytest

from test_serving import start_server


@pytest.fixture(scope="module")
def server(exported):
    proc, url = start_server(exported[0])
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def still_serving(url):
    r = httpx.post(url + "/predict", json={"texts": ["a wonderful film"]}, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0]["text"] == "a wonderful film"
    assert httpx.get(url + "/health").json() == {"status": "ok"}


def raw(url, payload: bytes, *, read=True, timeout=30) -> bytes:
    """Sends raw bytes over a socket (what httpx will not send) and returns the raw answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(payload)
        if not read:
            return b""
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("payload, status, fragment", [
    ({"texts": ["ok"] * 10_000}, 413, "10000 texts in one request; the limit is 64"),
    ({"texts": "just a string"}, 422, "texts"),
    ({"texts": [None]}, 422, "texts"),
    ({"texts": [["nested"]]}, 422, "texts"),
    ([1, 2, 3], 422, "invalid request body"),
])
def test_wrong_shapes_and_sizes_get_a_json_4xx(server, payload, status, fragment):
    r = httpx.post(server + "/predict", json=payload, timeout=30)
    assert r.status_code == status and fragment in r.json()["error"], r.text
    still_serving(server)


def test_a_5_mb_text_is_refused_by_its_size(server):
    r = httpx.post(server + "/predict", json={"texts": ["x" * 5_000_000]}, timeout=30)
    assert r.status_code == 413 and "limit is 1000000" in r.json()["error"]
    still_serving(server)


def test_a_chunked_body_without_content_length_is_counted_as_it_arrives(server):
    def body():
        yield b'{"texts": ["'
        for _ in range(120):
            yield b"x" * 10_000  # 1.2 MB in all, over the 1 MB limit
        yield b'"]}'

    r = httpx.post(server + "/predict", content=body(), headers={"content-type": "application/json"}, timeout=30)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "over 1000000 bytes" in r.json()["error"]
    small = httpx.post(server + "/predict", content=iter([b'{"texts": ', b'["fine"]}']),
                       headers={"content-type": "application/json"})
    assert small.status_code == 200  # a small chunked body is fine
    still_serving(server)


def test_a_slow_client_does_not_hold_up_the_others(server):
    body = b'{"texts": ["a slow client"]}'
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(head.encode())
        answered = []
        for byte in body:  # one byte every 40 ms: over a second for the whole body
            slow.sendall(bytes([byte]))
            start = time.perf_counter()
            httpx.post(server + "/predict", json={"texts": ["meanwhile"]}, timeout=30).raise_for_status()
            answered.append(time.perf_counter() - start)
            time.sleep(0.04)
        reply = slow.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200") and b"a slow client" in reply
    assert max(answered) < 2.0  # others were served while the slow body trickled in


def test_64_concurrent_connections_are_all_answered_correctly(server):
    texts = [f"review {i}: {'a delight' if i % 2 else 'a dreadful bore'}" for i in range(64)]
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda t: httpx.post(server + "/predict", json={"texts": [t]}, timeout=60), texts))
    assert all(a.status_code == 200 for a in answers)
    assert [a.json()["predictions"][0]["text"] for a in answers] == texts


def test_clients_that_disconnect_mid_request_do_not_hurt_the_server(server):
    body = b'{"texts": ["gone before the answer"]}'
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    raw(server, head.encode() + body[:10], read=False)  # half a body, then gone
    for _ in range(20):  # whole requests whose clients leave before the answer
        raw(server, head.encode() + body, read=False)
    raw(server, b"GARBAGE\r\n\r\n")  # not HTTP at all
    still_serving(server)


# -- faults that a healthy model does not make: the real app, in process --------------------------

class Failing:
    name = "failing"
    max_added_padding = None
    workers = 1

    def logits(self, batch):
        raise RuntimeError("out of memory in the engine")


class Hanging:
    name = "hanging"
    max_added_padding = None
    workers = 1

    def logits(self, batch):
        time.sleep(3)
        raise RuntimeError("never answered in time")


def app_with(trained, engine, **limits):
    from finebert.inference import Classifier
    from finebert.serving import Limits, create_app

    clf, _ = trained
    return create_app(Classifier(engine, clf.tokenizer, clf.info), limits=Limits(**limits))


def test_an_exception_inside_the_model_is_a_json_500_and_the_server_goes_on(trained):
    from fastapi.testclient import TestClient

    with TestClient(app_with(trained, Failing())) as client:
        for _ in range(2):
            r = client.post("/predict", json={"texts": ["anything"]})
            assert r.status_code == 500 and "out of memory in the engine" in r.json()["error"]
        assert client.get("/health").json() == {"status": "ok"}


def test_a_request_never_waits_forever(trained):
    from fastapi.testclient import TestClient

    with TestClient(app_with(trained, Hanging(), timeout_s=0.5)) as client:
        start = time.perf_counter()
        r = client.post("/predict", json={"texts": ["anything"]})
        assert r.status_code == 503 and "did not answer within 0.5 s" in r.json()["error"]
        assert time.perf_counter() - start < 2.5


def test_health_reports_a_dead_model_worker(trained):
    from fastapi.testclient import TestClient

    clf, _ = trained
    app = app_with(trained, clf.engine)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        app.state.service.worker.cancel()
        time.sleep(0.1)
        r = client.get("/health")
        assert r.status_code == 503 and "worker has stopped" in r.json()["error"]
        assert client.post("/predict", json={"texts": ["hi"]}).status_code == 503


@pytest.mark.slow
def test_two_minute_soak_keeps_memory_flat(exported):
    """Full load for 2 minutes (16 client threads); the RSS of the server's processes (its workers too) must
    grow by at most 10%."""
    import psutil

    proc, url = start_server(exported[0])
    try:
        server = psutil.Process(proc.pid)

        def rss():
            return sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
        texts = [f"soak text {i} about a {'great' if i % 3 else 'terrible'} film" for i in range(200)]

        def hammer(seconds):
            done, end = 0, time.time() + seconds
            with httpx.Client(timeout=30) as client:
                while time.time() < end:
                    r = client.post(url + "/predict", json={"texts": [texts[done % 200]]})
                    assert r.status_code == 200
                    done += 1
            return done

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(hammer, [5] * 16))  # warm up: allocator pools and caches settle
            start_rss = rss()
            served = sum(pool.map(hammer, [120] * 16))
        end_rss = rss()
        growth = end_rss / start_rss - 1
        print(f"\nsoak: {served} requests in 120 s, RSS {start_rss / 2**20:.0f} MB -> "
              f"{end_rss / 2**20:.0f} MB ({100 * growth:+.1f}%)")
        assert growth <= 0.10
        still_serving(url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
