"""Stage 9, serving: an HTTP API (FastAPI) and a web page over a Classifier.

    POST /predict  {"texts": ["...", ...]}  ->  {"predictions": [{"text", "label", "labels", "confidence", "probabilities"}]}
                   sentence-pair models: {"texts": [{"text": "...", "text_pair": "..."}, ...]}
    POST /explain  the same body (and an optional "label") -> {"explanations": [{"text", "label", "words", "scores"}]}
    GET  /health   200 {"status": "ok"}, or 503 when the model worker has died
    GET  /info     labels, problem type, backbone, metrics, engine, limits;  GET /  a web page;  /docs  OpenAPI

Micro-batching: concurrent requests wait a few milliseconds in a queue and are scored as one batch by
a single model thread, so throughput grows with concurrency. Every bad request gets a 4xx with
{"error": "..."}; a failure inside the model a 500 with {"error": "..."}; a request the model does not
answer in time a 503. The server keeps serving through all of them.

Workers: `serve` runs one server process per core by default (uvicorn's workers on one port), each with its
own model and micro-batcher and an equal share of the cores for the engine.
"""


import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from finebert.errors import ConfigError, MissingExtraError
from finebert.version import __version__

try:
    import uvicorn
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as missing:  # the [serve] extra: `finebert serve` says so in one line, before anything else
    raise MissingExtraError(missing.name or "fastapi", "serve") from None

MAX_AUTO_WORKERS = 8  # serve(workers=None): one server process per core, up to this many
WORKER_SETTINGS = "FINEBERT_SERVE_WORKER"  # environment variable: what each worker process loads (JSON)


@dataclass
class Limits:
    max_texts: int = 64  # texts per request
    max_chars: int = 10_000  # characters per text
    max_body_bytes: int = 1_000_000  # request body size, counted as it arrives (chunked bodies too)
    max_chunks: int = 256  # model inputs per request: texts, or their chunks for long_text="window" models
    max_explain: int = 8  # texts per /explain request (integrated gradients cost 50 passes each)
    max_batch: int = 128  # texts scored together by the model
    wait_ms: float = 1.0  # how long the first request in a batch waits for company
    timeout_s: float = 30.0  # a request not answered by then gets a 503 instead of waiting on


@dataclass
class _Job:
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Gathers concurrent requests into batches and scores each batch on one worker thread."""

    def __init__(self, classifier, limits: Limits):
        self.classifier, self.limits = classifier, limits
        self.queue: asyncio.Queue = asyncio.Queue()

    async def predict(self, texts: list[str], pairs: list[str] | None = None):
        job = _Job(texts, pairs, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size, deadline = len(jobs[0].texts), loop.time() + self.limits.wait_ms / 1000
            while size < self.limits.max_batch and (timeout := deadline - loop.time()) > 0:
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
                size += len(jobs[-1].texts)
            jobs = [job for job in jobs if not job.future.done()]  # done = cancelled: its client went away
            if not jobs:
                continue
            texts = [t for job in jobs for t in job.texts]
            pairs = None if jobs[0].pairs is None else [p for job in jobs for p in job.pairs]
            try:
                results = await asyncio.to_thread(self.classifier.classify, texts, pairs)
            except Exception as e:  # a model failure fails these requests, not the server
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            start = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(results[start:start + len(job.texts)])
                start += len(job.texts)


class TextPair(BaseModel):
    text: str
    text_pair: str


class PredictRequest(BaseModel):
    texts: list[str | TextPair]


class ExplainRequest(PredictRequest):
    label: str | None = None  # explain this label instead of each text's top one


class Refusal(Exception):
    """A request the server will not (or cannot) answer: one handler turns it into {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def error(status: int, message: str) -> JSONResponse:
    """The one shape of every error the server sends."""
    return JSONResponse({"error": message}, status_code=status)


class Service:
    """What the routes share: the classifier, its limits, the micro-batcher and the worker task that runs it."""

    def __init__(self, classifier, limits: Limits):
        self.classifier, self.limits = classifier, limits
        self.batcher = MicroBatcher(classifier, limits)
        self.worker: asyncio.Task | None = None  # started with the app (lifespan)
        self.explaining = asyncio.Lock()  # one explanation at a time: integrated gradients are heavy
        self.example = '{"texts": [{"text": "...", "text_pair": "..."}]}' if classifier.pairs else '{"texts": ["..."]}'
        self.route = "POST /predict"  # where `example` goes, for the messages of requests gone astray

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.worker = asyncio.create_task(self.batcher.run())
        yield
        self.worker.cancel()

    def read(self, items: list, most: int) -> tuple[list[str], list[str] | None]:
        """(texts, pairs) from a request's items, checked against the model and the limits."""
        pairs_model, limits = self.classifier.pairs, self.limits
        if not items:
            raise Refusal(422, f"texts is empty; send {self.example} with at least one text")
        if len(items) > most:
            raise Refusal(413, f"{len(items)} texts in one request; the limit is {most}, split the request")
        if any(isinstance(t, TextPair) != pairs_model for t in items):
            kind = "sentence pairs" if pairs_model else "single texts"
            raise Refusal(422, f"this model classifies {kind}; send {self.example}")
        texts = [t.text if isinstance(t, TextPair) else t for t in items]
        pairs = [t.text_pair for t in items] if pairs_model else None
        for i, text in enumerate(texts + (pairs or [])):
            where = f"texts[{i % len(texts)}]" + (".text_pair" if i >= len(texts) else "")
            if not text.strip():
                raise Refusal(422, f"{where} is empty; send non-empty texts")
            if len(text) > limits.max_chars:
                raise Refusal(413, f"{where} has {len(text)} characters; the limit is {limits.max_chars}")
        if self.classifier.config.long_text == "window":
            chunks = len(self.classifier.encode(texts).ids)
            if chunks > limits.max_chunks:
                raise Refusal(413, f"these texts make {chunks} chunks of {self.classifier.config.max_length} "
                                   f"tokens; the limit is {limits.max_chunks}, send fewer or shorter texts")
        return texts, pairs

    def stopped(self) -> str | None:
        """Why the model worker is no longer running, or None while it runs."""
        if not self.worker.done():
            return None
        return "cancelled" if self.worker.cancelled() else repr(self.worker.exception())

    async def predict(self, texts: list[str], pairs: list[str] | None):
        if self.stopped():
            raise Refusal(503, "the model worker has stopped; restart the server")
        try:
            return await asyncio.wait_for(self.batcher.predict(texts, pairs), self.limits.timeout_s)
        except asyncio.TimeoutError:
            raise Refusal(503, f"the model did not answer within {self.limits.timeout_s:g} s; try again later") from None
        except Exception as e:
            raise Refusal(500, f"the model failed on this request ({type(e).__name__}: {e})") from None

    async def explain(self, texts: list[str], pairs: list[str] | None, label: str | None):
        if label is not None and label not in self.classifier.labels:
            raise Refusal(422, f"label {label!r} is not one of {', '.join(self.classifier.labels)}")
        try:
            async with self.explaining:
                return await asyncio.wait_for(asyncio.to_thread(self.classifier.explain, texts, pairs, label=label),
                                              self.limits.timeout_s)
        except asyncio.TimeoutError:
            raise Refusal(503, f"the explanation took over {self.limits.timeout_s:g} s; send fewer or shorter texts") from None
        except MissingExtraError as e:
            raise Refusal(501, str(e)) from None

    def info(self) -> dict:
        clf, config, limits = self.classifier, self.classifier.config, self.limits
        return {"labels": clf.labels, "problem_type": clf.label_space.problem_type, "text_pair": clf.pairs,
                "long_text": config.long_text, "backbone": config.model, "engine": clf.engine.name,
                "metrics": clf.metrics, "max_length": config.max_length,
                "limits": {"max_texts": limits.max_texts, "max_chars": limits.max_chars,
                           "max_chunks": limits.max_chunks, "max_body_bytes": limits.max_body_bytes}}


# -- the routes: each reads the request, asks the service, answers -------------------------------------
router = APIRouter()


def _service(request: Request) -> Service:
    return request.app.state.service


@router.post("/predict")
async def predict(body: PredictRequest, request: Request):
    service = _service(request)
    texts, pairs = service.read(body.texts, service.limits.max_texts)
    predictions = await service.predict(texts, pairs)
    return JSONResponse({"predictions": [p.to_dict() for p in predictions]})  # skips FastAPI's re-encoding


@router.post("/explain")
async def explain(body: ExplainRequest, request: Request):
    service = _service(request)
    texts, pairs = service.read(body.texts, service.limits.max_explain)
    found = await service.explain(texts, pairs, body.label)
    return JSONResponse({"explanations": [e.to_dict() for e in found]})


@router.get("/health")
async def health(request: Request):
    reason = _service(request).stopped()
    if reason:
        raise Refusal(503, f"unhealthy: the model worker has stopped ({reason})")
    return {"status": "ok"}


@router.get("/info")
async def info(request: Request):
    return _service(request).info()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    return (files("finebert") / "page.html").read_text(encoding="utf-8")


# -- errors: every one answered as {"error": "..."} --------------------------------------------------
async def _refused(request: Request, exc: Refusal):
    return error(exc.status, exc.message)


async def _invalid_body(request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return error(422, f"invalid request body{' at ' + where if where else ''}: {first.get('msg', 'malformed')}; "
                      f"send {_service(request).example}")


async def _http_error(request: Request, exc: StarletteHTTPException):  # 404, 405, a malformed body (400)
    service = _service(request)
    return error(exc.status_code, f"{exc.detail}; send {service.example} to {service.route}")


async def _internal_error(request: Request, exc: Exception):  # a bug, not bad input: still JSON, the server stays up
    return error(500, f"internal error ({type(exc).__name__}); the request was not scored")


def create_app(classifier, *, api_key: str | None = None, limits: Limits | None = None) -> FastAPI:
    """The FastAPI application for `classifier`."""
    service = Service(classifier, limits or Limits())
    app = FastAPI(title="finebert", version=__version__, lifespan=service.lifespan,
                  description=f"Text classification with labels: {', '.join(classifier.labels)}")
    return finish_app(app, service, router, api_key=api_key, protected=("/predict", "/explain", "/info"))


def finish_app(app: FastAPI, service, router: APIRouter, *, api_key: str | None, protected: tuple[str, ...]) -> FastAPI:
    """The routes, the one shape of every error, and the guard (API key on the paths that start with one of
    `protected`, body size limit) of a finebert app; `service` (app.state.service) has .limits, .example, .route."""
    app.state.service = service
    app.include_router(router)
    app.add_exception_handler(Refusal, _refused)
    app.add_exception_handler(RequestValidationError, _invalid_body)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(_Guard, limits=service.limits, api_key=api_key, protected=protected)
    return app


class _Guard:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): the API key, and the body size
    limit, checked on Content-Length and on the bytes that arrive (a chunked body has no Content-Length):
    the body is read here, up to the limit, and handed on to the app."""

    def __init__(self, app, *, limits: Limits, api_key: str | None, protected: tuple[str, ...]):
        self.app, self.limits, self.api_key, self.protected = app, limits, api_key, protected

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        limit = self.limits.max_body_bytes
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > limit:
            return await error(413, f"request body is {int(length)} bytes; the limit is {limit}")(scope, receive, send)
        if self.api_key and scope["path"].startswith(self.protected):
            if not secrets.compare_digest(headers.get(b"x-api-key", b""), self.api_key.encode()):
                response = error(401, "missing or wrong API key; send it in the X-API-Key header")
                return await response(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nothing to answer
            body.append(message.get("body", b""))
            size += len(body[-1])
            more = message.get("more_body", False)
            if size > limit:
                return await error(413, f"request body is over {limit} bytes; the limit is {limit}")(scope, receive, send)
        body = b"".join(body)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            example = scope["app"].state.service.example
            return await error(400, f"the request body is not valid UTF-8 (byte {e.start}); send JSON encoded "
                                    f"as UTF-8, e.g. {example}")(scope, receive, send)
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def buffered_receive():
            return replay.pop() if replay else await receive()

        await self.app(scope, buffered_receive, send)


def serve(model: str | Path, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          engine: str = "auto", limits: Limits | None = None, workers: int | None = None, on_ready=None) -> None:
    """Loads the model and serves it until interrupted; `on_ready()` is called once the model has loaded.

    workers: server processes on the one port, each with its own copy of the model and an equal share of the
    cores (None: one per core, at most MAX_AUTO_WORKERS). One Python process parses HTTP and JSON on one core
    at a time; several keep every core busy (measured: 1.29-1.36x the texts/s on 2 cores, benchmarks/RESULTS.md).
    """
    from finebert.engines import usable_cores
    from finebert.inference import Classifier

    cores = usable_cores()
    workers = min(cores, MAX_AUTO_WORKERS) if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} is invalid: use a whole number of server processes, 1 or more "
                          f"(this machine has {cores} cores)")
    threads = max(1, cores // workers)
    # Micro-batches are small: the Rust tokenizer's own thread pool costs more than it saves there and
    # competes with ONNX Runtime for the cores (measured: +8% texts/s without it, benchmarks/RESULTS.md).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    classifier = Classifier.load(model, engine=engine, threads=threads)  # a bad folder fails here, before any worker
    if on_ready is not None:  # the model loads: the caller may say where it is served
        on_ready()
    # timeout_keep_alive: idle connections are closed after 5 s, so slow or stalled clients cannot pile up
    options = dict(host=host, port=port, log_level="warning", access_log=False, timeout_keep_alive=5)
    if workers == 1:
        uvicorn.run(create_app(classifier, api_key=api_key, limits=limits), **options)
        return
    # Each worker is a fresh process that loads the model itself (worker_app), with the engine resolved here.
    os.environ[WORKER_SETTINGS] = json.dumps({"model": str(Path(model).resolve()), "engine": classifier.engine.name,
                                              "threads": threads, "api_key": api_key,
                                              "limits": dataclasses.asdict(limits or Limits())})
    del classifier
    uvicorn.run("finebert.serving:worker_app", factory=True, workers=workers, **options)


def worker_app():
    """The application of one worker process of `serve(workers=N)`, set up as the parent said in WORKER_SETTINGS."""
    from finebert.inference import Classifier

    settings = json.loads(os.environ[WORKER_SETTINGS])
    classifier = Classifier.load(settings["model"], engine=settings["engine"], threads=settings["threads"])
    return create_app(classifier, api_key=settings["api_key"], limits=Limits(**settings["limits"]))
