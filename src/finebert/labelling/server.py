"""The labelling server: the HTTP API (FastAPI), the page that uses only it, and the teacher thread.

    GET    /api/next         -> {"id", "text", "guess", "confidence"}   (id null: every offered text is answered)
    POST   /api/labels       {"id": 12, "label": "positive"}  (multi-label: a list; null skips) -> {"labelled", "next"}
    DELETE /api/labels/last  undoes the last answer -> {"undone": {"id", "label"}, "next"}
    GET    /api/progress     -> {"labelled", "skipped", "per_label", "estimated_accuracy", "curve", "model", ...}
    GET    /                 the page: keys 1-9 choose a label, s skips, backspace undoes (multi-label: toggle, Enter)

A request is answered from what is in memory, after its label is on disk; the teacher thread refits the fast head
every few answers (outside the lock the requests take) and starts a fine-tune, in a process of its own at low
priority, when one is due (session.py says when). Errors are {"error": "..."} with a 4xx, as in serving.py.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from importlib.resources import files
from pathlib import Path

from finebert.errors import FinebertError
from finebert.labelling.session import REFIT_EVERY, Session
from finebert.serving import Limits, Refusal, finish_app

from fastapi import APIRouter, FastAPI, Request  # noqa: E402  (after serving: without [serve], its one-line error)
from fastapi.responses import HTMLResponse  # noqa: E402
from pydantic import BaseModel  # noqa: E402


class LabelRequest(BaseModel):
    id: int
    label: str | list[str] | None


class Labelling:
    """What the routes share: the session, the lock that guards it, and the teacher thread."""

    def __init__(self, session: Session, *, limits: Limits | None = None, fine_tune: bool = True):
        self.session, self.limits = session, limits or Limits()
        self.lock = threading.Lock()
        self.example = '{"id": 0, "label": "%s"}' % session.settings.labels[0]
        self.route = "POST /api/labels"
        self.fine_tune = fine_tune  # False: the fast head alone (tests of the page and the API)
        self.wake, self.stopping = threading.Event(), threading.Event()
        self.since_refit = 0  # answers since the last refit
        self.worker: subprocess.Popen | None = None  # the fine-tune running, if any
        self.model_error: str | None = None  # why the last fine-tune failed
        self.failed_at = -1  # labels when it failed: tried again at the next milestone
        self.teacher = threading.Thread(target=self._teach, name="finebert-teacher", daemon=True)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.teacher.start()
        yield
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(timeout=30)

    # -- what the routes call ---------------------------------------------------------------------------------------
    def next(self) -> dict:
        with self.lock:
            return self.session.next() or {"id": None, "text": None, "guess": None, "confidence": None}

    def answer(self, row: int, label) -> dict:
        with self.lock:
            try:
                self.session.answer(row, label)
            except FinebertError as e:
                status = 409 if "answered already" in str(e) else 422
                raise Refusal(status, str(e)) from None
            self.since_refit += 1
            labelled = len(self.session.project.labelled())
            item = self.session.next() or {"id": None}
        self.wake.set()
        return {"labelled": labelled, "next": item}

    def undo(self) -> dict:
        with self.lock:
            undone = self.session.undo()
            if undone is None:
                raise Refusal(404, "nothing to undo: no answer given here yet (labels from --seed-data stay)")
            self.since_refit += 1
            item = self.session.next() or {"id": None}
        self.wake.set()
        return {"undone": {"id": undone.id, "label": undone.label}, "next": item}

    def progress(self) -> dict:
        with self.lock:
            out = self.session.progress()
        return out | {"training": self.worker is not None, "model_error": self.model_error}

    # -- the teacher thread -----------------------------------------------------------------------------------------
    def _teach(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(timeout=1.0)
            self.wake.clear()
            if self.worker is not None and self.worker.poll() is not None:
                self._fine_tune_ended()
            if self.since_refit >= REFIT_EVERY or (self.since_refit and not self.session.queue):
                self.refresh()
            if self.fine_tune and self.worker is None and self._fine_tune_due():
                self._start_fine_tune()

    def refresh(self, reload: bool = False) -> None:
        """Refits the head and chooses the next texts; the work is done outside the lock, then swapped in."""
        self.since_refit = 0
        session = self.session
        if reload:
            features, trained_on = session.model_vectors()
        plan = session.plan(features if reload else None)
        with self.lock:
            if reload:
                session.features, session.trained_on = features, trained_on
            session.apply(plan, keep=session.queue[:1])  # the text on screen stays first

    def _fine_tune_due(self) -> bool:
        labelled = len(self.session.project.labelled())
        return self.session.fine_tune_due() and labelled > self.failed_at

    def _start_fine_tune(self) -> None:
        folder = self.session.project.folder
        log = open(folder / "fine-tune.log", "w")
        self.worker = subprocess.Popen([sys.executable, "-m", "finebert.labelling.worker", str(folder)],
                                       stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def _fine_tune_ended(self) -> None:
        code, self.worker = self.worker.returncode, None
        if code != 0:
            lines = (self.session.project.folder / "fine-tune.log").read_text(errors="replace").strip().splitlines()
            self.model_error = (lines[-1] if lines else f"exit code {code}")[:500]
            self.failed_at = len(self.session.project.labelled())
            return
        self.model_error = None
        self.refresh(reload=True)


# -- the routes: each asks the service and answers ---------------------------------------------------------------------
router = APIRouter()


def _service(request: Request) -> Labelling:
    return request.app.state.service


@router.get("/api/next")
def next_text(request: Request):
    """The text to label now, with the current model's guess and its confidence."""
    return _service(request).next()


@router.post("/api/labels")
def give_label(body: LabelRequest, request: Request):
    """Records a label (multi-label: a list of labels; null skips the text), on disk before this answers."""
    return _service(request).answer(body.id, body.label)


@router.delete("/api/labels/last")
def undo_last(request: Request):
    """Takes back the last answer; its text is shown again next."""
    return _service(request).undo()


@router.get("/api/progress")
def progress(request: Request):
    """Labels given (per label), skips, the estimated accuracy and its curve, the latest model."""
    return _service(request).progress()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page():
    return (files("finebert") / "label.html").read_text(encoding="utf-8")


def create_app(session: Session, *, api_key: str | None = None, fine_tune: bool = True) -> FastAPI:
    """The labelling app over a session."""
    service = Labelling(session, fine_tune=fine_tune)
    app = FastAPI(title="finebert label", lifespan=service.lifespan,
                  description=f"Labelling with the labels {', '.join(session.settings.labels)}")
    return finish_app(app, service, router, api_key=api_key, protected=("/api/",))


def label(pool: str | Path | None, output: str | Path, *, labels: list[str] | None = None,
          seed_data: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          fine_tune: bool = True, on_ready=None, on_embed=None, **settings) -> None:
    """Starts (or resumes) the project in `output` and serves its page until interrupted. Settings are those of
    project.Settings (multi_label, strategy, seed, model, max_length, candidates); None keeps the project's.
    `on_embed(n)` is called before the pool's n vectors are first computed, `on_ready(session)` once they are
    ready, before serving."""
    import uvicorn

    from finebert.labelling.project import Project

    project = Project.open(output, pool, labels=labels, seed_data=seed_data, **settings)
    try:
        session = Session(project, on_embed=on_embed)
        if on_ready is not None:
            on_ready(session)
        uvicorn.run(create_app(session, api_key=api_key, fine_tune=fine_tune), host=host, port=port,
                    log_level="warning", access_log=False, timeout_keep_alive=5)
    finally:
        project.close()


def worker_main(folder: str) -> None:
    """The fine-tune process (python -m finebert.labelling.worker PROJECT): low priority, and it ends with its parent."""
    import os

    from finebert.labelling.session import fine_tune

    parent = os.getppid()

    def watch():  # a server killed with -9 leaves no fine-tune behind
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    os.nice(10)
    try:
        fine_tune(Path(folder))
    except FinebertError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
