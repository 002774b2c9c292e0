"""Serving under load: a real `finebert serve` process, 16 concurrent clients over loopback.

    python benchmarks/serve_load.py [--model DIR] [--requests 4000] [--clients 16] [--texts-per-request 1]

Each client sends its share of the requests one after another (SST-2 dev sentences, one per request
by default) and records each latency; this prints texts/s, p50/p99 latency and the error count.
Without --model a model is trained on 8,000 SST-2 rows first.
"""

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from common import SST2, read_tsv, sst2_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--texts-per-request", type=int, default=1)
    args = parser.parse_args()
    folder = sst2_model(args.model)
    sentences = [t for t, _ in read_tsv(SST2 / "dev.tsv")]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "finebert"), "serve", str(folder), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.25)
        engine = httpx.get(url + "/info").json()["engine"]
        latencies, errors, lock = [], [], threading.Lock()
        per_client = args.requests // args.clients
        k = args.texts_per_request

        def client(c):  # the standard library's keep-alive client: light, so the server gets the CPU
            session = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for i in range(per_client):
                start = (c * per_client + i) * k
                body = json.dumps({"texts": [sentences[(start + j) % len(sentences)] for j in range(k)]})
                t0 = time.perf_counter()
                try:
                    session.request("POST", "/predict", body, {"Content-Type": "application/json"})
                    r = session.getresponse()
                    ok = r.status == 200 and len(json.loads(r.read())["predictions"]) == k
                except (OSError, http.client.HTTPException, ValueError):
                    ok = False
                    session.close()
                with lock:
                    (latencies if ok else errors).append(time.perf_counter() - t0)
            session.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=10)
    latencies.sort()
    done = len(latencies) * k
    print(f"engine {engine}: {args.clients} clients, {len(latencies) + len(errors)} requests of {k} text(s) in {seconds:.1f}s")
    print(f"throughput {done / seconds:.0f} texts/s  p50 {1000 * latencies[len(latencies) // 2]:.1f} ms  "
          f"p99 {1000 * latencies[int(0.99 * len(latencies)) - 1]:.1f} ms  errors {len(errors)}")


if __name__ == "__main__":
    main()
