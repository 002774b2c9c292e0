"""finebert.train(): the public entry to training. Checks the output, prepares the task, runs the loop, saves.

    clf = train("reviews.csv", output="model/", epochs=2)    # settings are TrainConfig fields
    clf = train("reviews.csv", output="model/", resume=True)  # continue an interrupted run
    clf = train("reviews.csv", output="model/", log_dir="runs/", mlflow="")  # TensorBoard and MLflow (tracking.py)
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from pathlib import Path
from typing import Callable

from finebert.config import TrainConfig, resolve_backbone
from finebert.data import Dataset
from finebert.engines import TorchEngine
from finebert.errors import ConfigError, Interrupted
from finebert.evaluation import score_logits
from finebert.inference import Classifier
from finebert.labels import LabelSpace
from finebert.model_folder import ModelInfo, check_output_folder, check_writable
from finebert.progress import progress_bar
from finebert.tracking import Tracker
from finebert.training import checkpoints, distributed
from finebert.training.loop import TrainState, describe_epoch
from finebert.training.recipes import Task, describe_recipe, prepare


def train(data: str | Path | Dataset | None = None, *, output: str | Path | None = None,
          validation: str | Path | Dataset | None = None, config: TrainConfig | None = None, resume: bool = False,
          quiet: bool = False, on_step: Callable[[int, float], None] | None = None,
          label_space: LabelSpace | None = None, log_dir: str | Path | None = None, mlflow: str | None = None,
          on_epoch: Callable[[dict], bool | None] | None = None, tracker: Tracker | None = None, soft=None, **settings):
    """Fine-tunes a classifier on `data` (a file path, a Dataset, or None for the built-in sample).

    Settings are TrainConfig fields, given as `config=` or as keywords (`epochs=2`). With `output`, the
    model folder is written there (atomically), with checkpoints under output/checkpoints while training
    runs; `resume=True` continues from the last good one (or starts from the beginning if none was saved yet). `on_step(step, loss)` is called after every
    step. `label_space` fixes the classes (e.g. a fold of a larger file that lacks a rare one); by
    default they are those of the training data. Returns a `finebert.Classifier`.

    Tracking (off by default; `pip install 'finebert[track]'`): `log_dir` writes TensorBoard event files there;
    `mlflow` logs to that tracking URI ("" for a local ./mlflow.db). `on_epoch(record)` is called after every
    epoch with its record (loss, validation scores); returning True stops the run there, keeping the best
    epoch so far (tuning prunes trials this way). `tracker`: a finebert.tracking.Tracker to use instead.
    `soft`: a teacher's answers for each training row (distill.Soft), learnt besides the labels (finebert.distill).
    """
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; the settings are the fields of finebert.TrainConfig")
    config = dataclasses.replace(config or TrainConfig(), **settings)
    output = Path(output) if output is not None else None
    rank, world = distributed.setup()  # several processes under torchrun (`--nproc`): this one's place
    lead = rank == 0  # validation, checkpoints, the progress bar and the saved model are the lead's alone
    if output is not None and lead:
        check_output_folder(output)  # refuse before spending minutes on training
        check_writable(output, resolve_backbone(config.model))
    elif resume and output is None:
        raise ConfigError("resume needs the output folder of the interrupted run; pass --output")
    if on_epoch is not None and world > 1:
        raise ConfigError("on_epoch stops a run from one process; train with one process to use it")
    task = prepare(data, validation, config, label_space, given=set(settings), soft=soft)
    config = task.config  # the recipe chosen for this data size, applied
    if tracker is None and lead and (log_dir is not None or mlflow is not None):
        tracker = Tracker.open(log_dir=log_dir, mlflow=mlflow, name=output.name if output is not None else "finebert")
    tracker = tracker if lead and tracker is not None else Tracker()
    try:
        classifier = _run(task, config, output, resume, quiet, on_step, on_epoch, tracker, rank, world)
    except BaseException as e:
        tracker.end(status="KILLED" if isinstance(e, (Interrupted, KeyboardInterrupt)) else "FAILED")
        raise
    last_step = classifier.info.history[-1]["step"] if classifier.info.history else 0
    tracker.end(output if output is not None and lead else None, classifier.metrics, step=last_step)
    return classifier


def _run(task: Task, config: TrainConfig, output: Path | None, resume: bool, quiet: bool, on_step, on_epoch,
         tracker: Tracker, rank: int, world: int):
    """The run itself, once the task is prepared: start or resume, the epochs, the saved model."""
    lead = rank == 0
    state = TrainState.start(task, config, rank, world)
    found = checkpoints.latest(output) if resume else None  # None: nothing saved yet (killed in its first minutes)
    if found is not None:
        checkpoints.restore(state, found, task, config)
    elif not resume and output is not None and checkpoints.exist(output):
        raise ConfigError(f"{output / checkpoints.FOLDER} holds checkpoints of an unfinished run; "
                          "add --resume to continue it, or delete that folder to start again")

    bar = progress_bar(total=state.total_steps * config.batch_size, initial=state.step * config.batch_size, unit="ex",
                       smoothing=0, disable=quiet or not lead, desc="training")
    if not quiet and lead:
        if resume and found is None:  # as PyTorch Lightning's ckpt_path="last": a script may always pass --resume
            bar.write(f"nothing to resume: no usable checkpoint in {output / checkpoints.FOLDER} yet, so training "
                      "starts from the beginning")
        bar.write(describe_recipe(config, task))
    tracker.begin(config)
    if tracker.on:
        def each_step(step: int, loss: float) -> None:
            tracker.step(step, loss, state.last_lr)
            if on_step:
                on_step(step, loss)
    else:
        each_step = on_step
    save = (lambda: checkpoints.checkpoint(state, output)) if output is not None and lead else None
    with _stop_on_sigint(enabled=output is not None) as stop:
        while not state.finished:
            epochs = len(state.history)
            state.run_epoch(task, config, bar, each_step, stop, save=save)
            if len(state.history) > epochs and lead:  # an epoch ended (not Ctrl-C mid-epoch)
                record = state.history[-1]
                if not quiet:
                    bar.write(describe_epoch(record, task.selection))
                tracker.epoch(record)
                if on_epoch is not None and on_epoch(record) and not state.finished:
                    state.stopped = record["stopped"] = "pruned"
            if state.interrupted:
                bar.close()
                if save:
                    save()
                distributed.finish()
                raise Interrupted(f"interrupted at step {state.step} of {state.total_steps}; a checkpoint is saved "
                                  f"in {output / checkpoints.FOLDER}: run the same command with --resume to continue")
    bar.close()
    info = state.finish(task, config)
    classifier = Classifier(TorchEngine(state.model, state.device), task.tokenizer, info)
    if output is not None and lead:  # replaces the folder, checkpoints included: the run is complete
        classifier.save(output, extra=_validation_report(state, task, info))
    distributed.finish()
    return classifier


def _validation_report(state: TrainState, task: Task, info: ModelInfo):
    """Writes report/ (report.py) for the validation data into the new model folder, if there was any."""
    if state.best is None:
        return None

    def write(folder: Path) -> None:
        from finebert.report import write_report

        temperature = info.calibration["pytorch"]["temperature"]
        result = score_logits(task.space, state.best["logits"], task.y_val, temperature)
        write_report(folder / "report", result, task.space, state.best["logits"], task.y_val, temperature,
                     task.val_texts, task.val_pairs, history=info.history,
                     title=f"validation data held out in training (epoch {state.best['epoch']})")

    return write


class _StopFlag:
    requested = False


@contextlib.contextmanager
def _stop_on_sigint(enabled: bool):
    """Ctrl-C (SIGINT) sets a flag that the loop checks after each step, so it can stop between steps and
    save a checkpoint. Only in the main thread, and only when there is an output folder to save to."""
    stop = _StopFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
