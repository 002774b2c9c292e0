"""Experiment tracking: where one training run's numbers go besides the terminal. Off unless asked for.

    tracker = Tracker.open(log_dir="runs/", mlflow="sqlite:///mlflow.db", name="model")
    tracker.begin(config)                      # the settings: TensorBoard text, MLflow params
    tracker.step(step, loss, learning_rate)    # after every optimizer step
    tracker.epoch(record)                      # after every epoch: its validation scores
    tracker.end(folder, metrics)               # the final metrics; MLflow also gets the report and the model folder

TensorBoard (`log_dir`): event files under log_dir, scalars train/loss and train/learning_rate per step,
val/<metric> per epoch (at its last step), the settings as text. MLflow (`mlflow`: a tracking URI, or "" for a
local SQLite store, ./mlflow.db): one run, made through MlflowClient rather than the fluent API, so no run is
ever "already active" in the process; a tuning study's trials are runs nested under the study's (`parent`).
Both need `pip install 'finebert[track]'`; neither is imported when off.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from finebert.errors import ConfigError, MissingExtraError, first_line

DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"  # MLflow's own default store since 3.7 (in the working folder)
EXPERIMENT = "finebert"  # the MLflow experiment runs go into


class Tracker:
    """Sends a run's settings, losses and scores to TensorBoard and/or MLflow; does nothing when both are off."""

    def __init__(self, tensorboard=None, mlflow: "_MLflowRun | None" = None):
        self.tensorboard = tensorboard  # a SummaryWriter, or None
        self.mlflow = mlflow

    @classmethod
    def open(cls, *, log_dir: str | Path | None = None, mlflow: str | None = None, name: str = "finebert",
             parent: str | None = None, tags: dict | None = None, run_id: str | None = None) -> "Tracker":
        """A tracker for one run. `mlflow`: a tracking URI, "" for DEFAULT_MLFLOW_URI, None for off.
        `parent`: the MLflow run id this run is nested under (a tuning study's); `run_id`: an existing MLflow
        run to go on logging to (a resumed study's own run), instead of a new one."""
        writer = None
        if log_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MissingExtraError("tensorboard", "track") from None
            writer = SummaryWriter(log_dir=str(log_dir))
        run = None
        if mlflow is not None:
            run = _MLflowRun.start(mlflow or DEFAULT_MLFLOW_URI, name, parent, tags, run_id)
        return cls(writer, run)

    @property
    def on(self) -> bool:
        return self.tensorboard is not None or self.mlflow is not None

    def begin(self, config) -> None:
        """The run's settings (a TrainConfig, or any dataclass with to_dict, or a dict)."""
        settings = config if isinstance(config, dict) else config.to_dict()
        if self.tensorboard is not None:
            text = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in settings.items())  # indented: shown as code
            self.tensorboard.add_text("settings", text)
        if self.mlflow is not None:
            self.mlflow.params(settings)

    def step(self, step: int, loss: float, learning_rate: float) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("train/loss", loss, step)
            self.tensorboard.add_scalar("train/learning_rate", learning_rate, step)
        if self.mlflow is not None:
            self.mlflow.metrics({"loss": loss, "learning_rate": learning_rate}, step)

    def epoch(self, record: dict) -> None:
        """An epoch's record (loop.TrainState.end_epoch): its val_* scores, logged at the epoch's last step."""
        scores = {k: v for k, v in record.items() if k.startswith("val_") and isinstance(v, (int, float))}
        if self.tensorboard is not None:
            for key, value in scores.items():
                self.tensorboard.add_scalar(f"val/{key[4:]}", value, record["step"])
            self.tensorboard.flush()
        if self.mlflow is not None:
            self.mlflow.metrics(scores | {"epoch": record["epoch"]}, record["step"])
            self.mlflow.flush()

    def end(self, folder: Path | None = None, metrics: dict | None = None, *, step: int = 0,
            status: str = "FINISHED") -> None:
        """Closes the run: final metrics (at `step`, the last), and to MLflow the model folder (its report/
        included) as artifacts. status: FINISHED, FAILED or KILLED (MLflow's run states)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.mlflow is not None:
            numbers = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.mlflow.finish(folder, numbers, step, status)

    @property
    def run_id(self) -> str | None:
        return self.mlflow.run_id if self.mlflow is not None else None


class _MLflowRun:
    """One MLflow run, written through MlflowClient; metrics are buffered and sent in batches."""

    BATCH = 1000  # MLflow's limit on metrics per log_batch call

    def __init__(self, client, run_id: str):
        self.client, self.run_id, self.pending = client, run_id, []

    @classmethod
    def start(cls, uri: str, name: str, parent: str | None, tags: dict | None, run_id: str | None) -> "_MLflowRun":
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise MissingExtraError("mlflow", "track") from None
        import logging

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its lines on creating database tables
        client = MlflowClient(tracking_uri=uri)
        if run_id is not None:
            return cls(client, run_id)
        try:
            _check_server(uri)
            experiment = client.get_experiment_by_name(EXPERIMENT)
            experiment_id = experiment.experiment_id if experiment else \
                client.create_experiment(EXPERIMENT, artifact_location=_artifacts_beside(uri))
        except Exception as e:  # an unreachable server, a bad URI, a database it cannot open
            first = first_line(e)[:300]
            raise ConfigError(f"--mlflow {uri}: cannot open that tracking store ({first}); give a reachable "
                              f"tracking URI, or --mlflow alone for {DEFAULT_MLFLOW_URI}") from None
        tags = dict(tags or {}) | ({"mlflow.parentRunId": parent} if parent else {})
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        return cls(client, run.info.run_id)

    def params(self, settings: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in settings.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def metrics(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, step) for k, v in values.items()]
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:self.BATCH], self.pending[self.BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, folder: Path | None, metrics: dict, step: int, status: str) -> None:
        self.metrics(metrics, step)
        self.flush()
        if folder is not None and Path(folder).is_dir():
            self.client.log_artifacts(self.run_id, str(folder), artifact_path="model")
        self.client.set_terminated(self.run_id, status=status)


def _artifacts_beside(uri: str) -> str | None:
    """A SQLite store's artifacts in mlartifacts/ beside the database file (MLflow would use ./mlruns wherever the
    process runs); other stores choose their own."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()


def _check_server(uri: str) -> None:
    """An http(s) tracking server that does not answer within 5 s fails now, in one line: MLflow's own client would
    retry for about four minutes first."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    try:
        socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout=5).close()
    except OSError as e:
        raise OSError(f"no server answers at {parts.netloc} ({e.strerror or e})") from None
