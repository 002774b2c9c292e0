"""Serving under load: a real `finebert serve` process, 16 concurrent clients over loopback.

    python benchmarks/serve_load.py [--model DIR] [--requests 4000] [--clients 16] [--texts-per-request 1]
                                    [--load python|wrk|both] [--seconds 20] [--workers N] [--emulate-avx2]

Two load generators, one after the other against the same server:
- python: threads with the standard library's keep-alive client; each sends its share of the requests one
  after another (SST-2 dev sentences, one per request by default) and records each latency. A Python client
  on the same 2 cores takes CPU from the server, so this reads low.
- wrk: the native load generator (Debian: `apt-get install wrk`), one thread, the same number of keep-alive
  connections, for --seconds, POSTing the same sentences (a Lua script).
Each prints texts/s, p50/p99 latency and the errors. The server runs its default number of worker
processes (one per core) unless --workers says otherwise. Without --model a model is trained on 8,000 SST-2 rows first.
--emulate-avx2 runs the server (and the clients) as on a CPU with AVX2 and nothing newer (common.emulate_avx2).
"""

import argparse
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from common import SST2, cpu_description, emulate_avx2, read_tsv, sst2_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--engine", default="auto", help="the server's engine: auto (fastest validated), onnx-int8, ...")
    parser.add_argument("--load", choices=["python", "wrk", "both"], default="both")
    parser.add_argument("--seconds", type=int, default=20, help="how long wrk runs")
    parser.add_argument("--workers", type=int, help="the server's worker processes (default: the server's own, one per core)")
    parser.add_argument("--emulate-avx2", action="store_true", help="hide AVX-512, VNNI, bf16 and AMX from server and clients")
    args = parser.parse_args()
    emulation = emulate_avx2() if args.emulate_avx2 else None
    if args.load != "python" and shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk); or run with --load python")
    folder = sst2_model(args.model)
    sentences = [t for t, _ in read_tsv(SST2 / "dev.tsv")]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "finebert"), "serve", str(folder), "--port", str(port),
                               "--engine", args.engine, *(["--workers", str(args.workers)] if args.workers else [])],
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
        print(cpu_description(emulation))
        print(f"engine {engine}, workers {args.workers or 'default (one per core)'}: {args.clients} concurrent clients, "
              f"{args.texts_per_request} text(s) per request")
        if args.load in ("python", "both"):
            python_clients(port, sentences, args)
        if args.load in ("wrk", "both"):
            wrk_clients(url, sentences, args)
    finally:
        server.terminate()
        server.wait(timeout=10)


def python_clients(port: int, sentences: list[str], args) -> None:
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
    latencies.sort()
    print(f"python clients: {len(latencies) + len(errors)} requests in {seconds:.1f}s, "
          f"throughput {len(latencies) * k / seconds:.0f} texts/s  p50 {1000 * latencies[len(latencies) // 2]:.1f} ms  "
          f"p99 {1000 * latencies[int(0.99 * len(latencies)) - 1]:.1f} ms  errors {len(errors)}", flush=True)


def wrk_clients(url: str, sentences: list[str], args) -> None:
    k = args.texts_per_request
    bodies = [json.dumps({"texts": [sentences[(i * k + j) % len(sentences)] for j in range(k)]}) for i in range(400)]
    script = "bodies = {" + ",\n".join(f"[==[{b}]==]" for b in bodies) + "}\n" + \
        """i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, bodies[(i % #bodies) + 1])
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(script)
        f.flush()
        out = subprocess.run(["wrk", "-t1", f"-c{args.clients}", f"-d{args.seconds}s", "--latency", "-s", f.name,
                              url + "/predict"], capture_output=True, text=True, check=True).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1000.0}

    def percentile(p):
        value, scale = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * unit[scale]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    requests = re.search(r"(\d+) requests in", out).group(1)
    print(f"wrk: {requests} requests in {args.seconds}s, throughput "
          f"{rate * k:.0f} texts/s  p50 {percentile(50):.1f} ms  p99 {percentile(99):.1f} ms  "
          f"errors {failed.group(1) if failed else 0}{'; socket errors ' + socket_errors.group(1) if socket_errors else ''}")


if __name__ == "__main__":
    main()
