"""Stage 9, serving: an HTTP API (FastAPI) and a web page over a Classifier.

    POST /predict  {"texts": ["...", ...]}  ->  {"predictions": [{"text", "label", "confidence", "probabilities"}]}
    GET  /health   liveness;  GET /info  labels, backbone, metrics, engine;  GET /  a web page;  /docs  OpenAPI

Micro-batching: concurrent requests wait a few milliseconds in a queue and are scored as one batch by
a single model thread, so throughput grows with concurrency. Bad requests get a 4xx with
{"error": "..."} and the server keeps serving.
"""


import asyncio
import os
import secrets
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from finebert.errors import MissingExtraError


@dataclass
class Limits:
    max_texts: int = 64  # texts per request
    max_chars: int = 10_000  # characters per text
    max_body_bytes: int = 1_000_000  # request body size
    max_batch: int = 128  # texts scored together by the model
    wait_ms: float = 1.0  # how long the first request in a batch waits for company


class MicroBatcher:
    """Gathers concurrent requests into batches and scores each batch on one worker thread."""

    def __init__(self, classifier, limits: Limits):
        self.classifier, self.limits = classifier, limits
        self.queue: asyncio.Queue = asyncio.Queue()

    async def predict(self, texts: list[str]):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def run(self):
        while True:
            pending = [await self.queue.get()]
            size = len(pending[0][0])
            deadline = asyncio.get_running_loop().time() + self.limits.wait_ms / 1000
            while size < self.limits.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                pending.append(item)
                size += len(item[0])
            texts = [t for request, _ in pending for t in request]
            try:
                results = await asyncio.to_thread(self.classifier.classify, texts)
            except Exception as e:  # a model failure fails these requests, not the server
                for _, future in pending:
                    if not future.done():
                        future.set_exception(e)
                continue
            start = 0
            for request, future in pending:
                if not future.done():  # done = cancelled: its client went away
                    future.set_result(results[start:start + len(request)])
                start += len(request)


def create_app(classifier, *, api_key: str | None = None, limits: Limits | None = None):
    """The FastAPI application for `classifier`."""
    try:
        from fastapi import FastAPI
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import HTMLResponse, JSONResponse
        from pydantic import BaseModel
    except ImportError:
        raise MissingExtraError("fastapi", "serve") from None

    limits = limits or Limits()

    class PredictRequest(BaseModel):
        texts: list[str]

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status_code=status)

    async def lifespan(app):
        batcher = MicroBatcher(classifier, limits)
        worker = asyncio.create_task(batcher.run())
        app.state.batcher = batcher
        yield
        worker.cancel()

    app = FastAPI(title="finebert", version=_version(), lifespan=lifespan,
                  description=f"Text classification with labels: {', '.join(classifier.labels)}")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(422, f"invalid request body{' at ' + where if where else ''}: {first.get('msg', 'malformed')}; "
                          'send {"texts": ["..."]}')

    app.add_middleware(_Guard, limits=limits, api_key=api_key, json_error=error)

    @app.post("/predict")
    async def predict(body: PredictRequest):
        texts = body.texts
        if not texts:
            return error(422, 'texts is empty; send {"texts": ["..."]} with at least one text')
        if len(texts) > limits.max_texts:
            return error(413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}, split the request")
        for i, text in enumerate(texts):
            if not text.strip():
                return error(422, f"texts[{i}] is empty; send non-empty texts")
            if len(text) > limits.max_chars:
                return error(413, f"texts[{i}] has {len(text)} characters; the limit is {limits.max_chars}")
        predictions = await app.state.batcher.predict(texts)
        return JSONResponse({"predictions": [p.to_dict() for p in predictions]})  # skips FastAPI's re-encoding

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return {"labels": classifier.labels, "backbone": classifier.config.model, "engine": classifier.engine.name,
                "metrics": classifier.metrics, "max_length": classifier.config.max_length,
                "limits": {"max_texts": limits.max_texts, "max_chars": limits.max_chars,
                           "max_body_bytes": limits.max_body_bytes}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return (files("finebert") / "page.html").read_text(encoding="utf-8")

    return app


class _Guard:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): body size limit and API key."""

    def __init__(self, app, *, limits: Limits, api_key: str | None, json_error):
        self.app, self.limits, self.api_key, self.error = app, limits, api_key, json_error

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"0")
            if length.isdigit() and int(length) > self.limits.max_body_bytes:
                response = self.error(413, f"request body is {int(length)} bytes; the limit is {self.limits.max_body_bytes}")
                return await response(scope, receive, send)
            if self.api_key and scope["path"] in ("/predict", "/info"):
                given = headers.get(b"x-api-key", b"")
                if not secrets.compare_digest(given, self.api_key.encode()):
                    response = self.error(401, "missing or wrong API key; send it in the X-API-Key header")
                    return await response(scope, receive, send)
        await self.app(scope, receive, send)


def serve(model: str | Path, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          engine: str = "auto", limits: Limits | None = None) -> None:
    """Loads the model and serves it until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtraError("uvicorn", "serve") from None
    from finebert.inference import Classifier

    # Micro-batches are small: the Rust tokenizer's own thread pool costs more than it saves there and
    # competes with ONNX Runtime for the cores (measured: +8% texts/s without it, benchmarks/RESULTS.md).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    classifier = Classifier.load(model, engine=engine)
    app = create_app(classifier, api_key=api_key, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _version() -> str:
    from finebert import __version__

    return __version__
