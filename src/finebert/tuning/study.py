"""finebert.tune(): an Optuna study whose trials are ordinary finebert training runs; the best one's model is kept.

    result = tune("reviews.csv", output="best/", trials=12)   # best/ is an ordinary model folder
    result.value, result.settings                              # its validation score and the settings it found

What finebert does that the HF Trainer's search does not (benchmarks/RESULTS.md measures it):
- the best trial's model is kept, as it finished, in `output` (with trials.csv and report/tuning.html);
- the first trial runs the settings `finebert train` would choose, and a later trial's model replaces the one
  kept only when it is better by more than the validation data's noise (_replaces_kept): a tuned model that
  merely read one validation row higher is not passed off as better than the default;
- a trial's objective is the validation score of the model it keeps (its best epoch), not its last evaluation;
- a median pruner sees every epoch's validation score (epochs, not global steps) and stops bad trials early;
- the study lives in storage (SQLite next to the output by default: best.study.db), so a killed `tune` resumes,
  and `trials` is the study's total of finished trials, not that many more; several machines can share one
  study through any Optuna storage URL. A trial killed on this machine is run again with the same settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finebert.config import TrainConfig, resolve_backbone
from finebert.errors import ConfigError, FinebertError, first_line
from finebert.tuning import results
from finebert.tuning.space import Choice, Range, default_space, describe, fixed, read_space, sample, searched

MAX_FAILURES = 3  # trials in a row refused by TrainConfig (a combination of values it rejects): stop the study


@dataclass
class TuneResult:
    """What a study found: the kept trial's model (loaded from `output`) and every trial's record."""

    classifier: object  # finebert.Classifier of the kept trial: the best, clear of the validation data's noise
    value: float  # its objective: the validation score of the model it kept
    objective: str  # "val_accuracy" or "val_macro_f1"
    settings: dict  # the settings it searched, as that trial drew them
    trial: int  # its number in the study
    trials: list[dict]  # every trial: number, state, value, seconds, epochs, settings
    study: str  # the storage URL and study name


def tune(data: str | Path, *, output: str | Path, trials: int = 20, timeout: float | None = None,
         validation: str | Path | None = None, space: str | Path | dict | None = None, study: str | None = None,
         study_name: str | None = None, log_dir: str | Path | None = None, mlflow: str | None = None,
         quiet: bool = False, **settings) -> TuneResult:
    """Searches training settings on `data` and keeps the best trial's model in `output` (a trial replaces the
    one kept only when better by more than the validation data's noise; the first runs train's own settings).

    trials: finished trials the study should end with, counting those of earlier runs of it. timeout: seconds
    this call may run (a trial in progress is cut to fit). space: a YAML file (tuning/space.py) or a dict of
    Range/Choice/values. study: an Optuna storage URL (default: SQLite next to output, `<output>.study.db`);
    study_name: default the output folder's name. Settings given as keywords are the same for every trial
    and are not searched. log_dir/mlflow: tracking per trial (finebert.tracking), nested under the study.
    """
    optuna = _import_optuna()
    from finebert.model_folder import check_output_folder, check_writable
    from finebert.training.recipes import as_dataset, held_out, prepare_labels, selection_metric

    output = Path(output)
    if not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"trials={trials!r}: give a whole number of trials of at least 1, e.g. 12")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout={timeout!r}: give a positive number of seconds, or leave it unset")
    config = TrainConfig(**settings)  # the fixed settings, checked before anything is read or written
    check_output_folder(output)
    label_space = prepare_labels(as_dataset(data, config), config, sample=False)
    train_set, val_set, y, y_val = held_out(data, validation, config, label_space, "scoring trials")
    space_ = _space(space, config, set(settings), len(train_set))
    constant = settings | fixed(space_)
    for_space = searched(space_)
    objective = "val_" + selection_metric(label_space, y)
    check_writable(output, resolve_backbone(config.model))

    url = study or f"sqlite:///{output.resolve()}.study.db"
    name = study_name or output.resolve().name
    storage = _storage(optuna, url)
    record = {"data": _fingerprint(data, validation), "objective": objective, "settings": _jsonable(constant)}
    the_study = _open_study(optuna, storage, name, url, record, config.seed)

    if not the_study.trials:  # the first trial is what `finebert train` would run: the study starts from it
        the_study.enqueue_trial(_train_defaults(TrainConfig(**constant), set(constant), len(train_set), label_space,
                                                for_space))
    parent = _parent_run(the_study, mlflow, name, constant, for_space) if mlflow is not None else None
    _retry_killed_trials(optuna, storage, the_study, output)
    host = f"{socket.gethostname()}:{os.getpid()}"
    started = time.monotonic()
    failures = [0]

    def objective_fn(trial) -> float:
        from finebert.tracking import Tracker
        from finebert.training import train

        trial.set_user_attr("host", host)
        drawn = sample(trial, for_space)
        limit = _time_left(timeout, started)
        run_settings = constant | drawn
        if limit is not None:
            run_settings["max_time"] = min(limit, run_settings.get("max_time") or limit)
        scratch = _scratch(output, trial.number)
        shutil.rmtree(scratch, ignore_errors=True)
        tracker = Tracker.open(log_dir=None if log_dir is None else Path(log_dir) / f"trial-{trial.number}",
                               mlflow=mlflow, name=f"{name} trial {trial.number}", parent=parent)

        def report(epoch_record: dict) -> bool:
            trial.report(epoch_record[objective], epoch_record["epoch"])
            return trial.should_prune()

        begun = time.monotonic()
        try:
            clf = train(train_set, validation=val_set, label_space=label_space, output=scratch, quiet=True,
                        on_epoch=report, tracker=tracker, **run_settings)
        except ConfigError as e:
            shutil.rmtree(scratch, ignore_errors=True)
            failures[0] += 1
            trial.set_user_attr("error", str(e))
            raise
        failures[0] = 0
        value = clf.metrics[objective]
        history = clf.info.history
        trial.set_user_attr("seconds", round(time.monotonic() - begun, 1))
        trial.set_user_attr("epochs_run", history[-1]["epoch"] if history else 0)
        trial.set_user_attr("best_epoch", clf.metrics.get("best_epoch"))
        pruned = bool(history) and history[-1].get("stopped") == "pruned"
        if not pruned:
            answers = _answers(clf, val_set)
            trial.set_user_attr("answers", answers)
            verdict = _replaces_kept(the_study, answers, y_val, objective)
            trial.set_user_attr("verdict", verdict)
            if verdict.startswith("kept"):
                results.keep(scratch, output, trial.number, objective, value, name, url)
        shutil.rmtree(scratch, ignore_errors=True)
        if pruned:
            raise optuna.TrialPruned(f"pruned at epoch {history[-1]['epoch']}")
        return value

    bar = results.Progress(the_study, trials, quiet)
    while results.count_finished(the_study) < trials and _time_left(timeout, started) != 0:
        if failures[0] >= MAX_FAILURES:
            last = the_study.trials[-1].user_attrs.get("error", "")
            raise ConfigError(f"{MAX_FAILURES} trials in a row were refused ({last}); narrow the search space")
        the_study.optimize(objective_fn, n_trials=1, timeout=_time_left(timeout, started), catch=(ConfigError,),
                           callbacks=[lambda s, t: bar.trial_done(s, t, objective, output, for_space)])
    bar.close()

    results.write(the_study, output, objective, for_space)
    best = _kept_trial(the_study)
    if best is None:
        raise FinebertError(f"no trial finished in the time given, so there is no model in {output}; "
                            "give a longer --timeout or fewer epochs")
    from finebert.inference import Classifier

    classifier = Classifier.load(output, engine="pytorch")
    kept = classifier.metrics.get("tuning_trial")
    if parent is not None:
        results.finish_parent(mlflow, parent, the_study, output, objective, best)
    if not quiet:
        results.summary(the_study, objective, best, kept, output)
    return TuneResult(classifier, best.value, objective, best.params, best.number, results.rows(the_study),
                      f"{url} (study {name})")


# -- the study's storage and record --------------------------------------------------------------------
def _import_optuna():
    try:
        import optuna
    except ImportError:
        from finebert.errors import MissingExtraError

        raise MissingExtraError("optuna", "tune") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # finebert says what happens; Optuna's own lines off
    return optuna


def _storage(optuna, url: str):
    """The study's storage: a database (SQLite, PostgreSQL, MySQL) with heartbeats, so that a trial whose machine
    died is failed and run again by the others after two minutes; or a journal file (a path ending .log)."""
    import warnings

    try:
        if url.endswith(".log") and "://" not in url:
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url))
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5, and have been since 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120,
                                              heartbeat_stale_trial_callback=retry)
    except Exception as e:  # an unreachable server, a URL of no known database, a folder that does not exist
        first = first_line(e)[:300]
        raise ConfigError(f"--study {url}: cannot open that storage ({first}); give a reachable database URL "
                          "such as sqlite:///study.db or postgresql://host/db") from None


def _open_study(optuna, storage, name: str, url: str, record: dict, seed: int):
    """The study of that name, created with finebert's record (data, objective, fixed settings), or loaded when
    its record matches: a study of other data or another objective is refused."""
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    found = study.user_attrs.get("finebert")
    if found is None:
        if study.trials:
            raise ConfigError(f"{url}: study {name!r} was not made by finebert tune; give another --study-name")
        study.set_user_attr("finebert", record)
        return study
    for key, what in (("data", "other data"), ("objective", "another objective"), ("settings", "other settings")):
        if found.get(key) != record[key]:
            raise ConfigError(f"{url}: study {name!r} belongs to {what} ({key}: {_short(found.get(key))}, "
                              f"this run: {_short(record[key])}); give another --study-name, or delete the study")
    return study


def _fingerprint(data, validation) -> str:
    """sha256 of the training (and validation) data: of the files' bytes, or of a Dataset's texts and labels."""
    digest = hashlib.sha256()
    for source in (data, validation):
        if source is None:
            digest.update(b"-")
        elif isinstance(source, (str, Path)):
            with open(source, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(json.dumps([source.texts, source.labels, source.pairs], default=str).encode())
    return digest.hexdigest()[:16]


def _retry_killed_trials(optuna, storage, study, output: Path) -> None:
    """Trials left running by a process of this machine that is gone (killed, a lost terminal) are marked failed,
    their half-written model removed, and their settings queued to run again first; those of other machines fail
    by heartbeat (_storage)."""
    me = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        host, _, pid = trial.user_attrs.get("host", "").rpartition(":")
        if host != me or not pid.isdigit() or _alive(int(pid)):
            continue
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "error", "killed; run again as a new trial")
        storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
        shutil.rmtree(_scratch(output, trial.number), ignore_errors=True)


def _scratch(output: Path, trial: int) -> Path:
    """Where a trial trains its model, beside the output: it becomes the output if the trial is kept."""
    return output.parent / f".{output.name}.trial-{trial}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- which trial's model is kept -------------------------------------------------------------------------
def _answers(clf, val_set) -> list[int]:
    """The trial's decision on each validation row: its class id, or for multi-label a bitmask of its labels."""
    decisions = clf.outputs(val_set.texts, val_set.pairs).decisions  # (N, C) bool
    if not clf.label_space.multi_label:
        return decisions.argmax(axis=1).tolist()
    return [sum(1 << int(k) for k in np.flatnonzero(row)) for row in decisions]


def _score(answers: np.ndarray, y: np.ndarray, objective: str, classes: int) -> float:
    from sklearn.metrics import f1_score

    if y.ndim == 1 and objective == "val_accuracy":
        return float((answers == y).mean())
    if y.ndim == 1:
        return f1_score(y, answers, average="macro", labels=range(classes), zero_division=0)
    predicted = (answers[:, None] >> np.arange(classes)) & 1  # bitmasks back to (N, C)
    return f1_score(y, predicted, average="macro", zero_division=0)


def _replaces_kept(study, answers: list[int], y: np.ndarray, objective: str) -> str:
    """Whether a complete trial's model replaces the one kept so far: only if it scores higher on the validation
    rows by more than one standard error of the difference (the two models on the same rows, 400 bootstrap
    resamples). On 200 validation rows a difference of one row is half a point: noise, not a better setting. The
    first trial (the settings `finebert train` chooses) is kept until a trial is clearly better. Returns the
    verdict said in the trial's line: "kept ..." or "not kept: ..."."""
    kept = next((t for t in reversed(study.get_trials(deepcopy=False))
                 if t.user_attrs.get("verdict", "").startswith("kept") and t.state.name == "COMPLETE"), None)
    if kept is None:
        return "kept (the first complete trial)"
    classes = y.shape[1] if y.ndim == 2 else int(max(y.max(), max(answers), max(kept.user_attrs["answers"]))) + 1
    new, old = np.asarray(answers), np.asarray(kept.user_attrs["answers"])
    difference = _score(new, y, objective, classes) - _score(old, y, objective, classes)
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(400)]
    spread = float(np.std([_score(new[d], y[d], objective, classes) - _score(old[d], y[d], objective, classes)
                           for d in draws]))
    gap = f"{100 * difference:+.2f} ± {100 * spread:.2f} points against trial {kept.number}"
    if difference > spread:
        return f"kept ({gap})"
    if difference < -spread:
        return f"not kept: {gap}"
    return f"not kept: {gap}, within the validation data's noise"


def _kept_trial(study):
    kept = [t for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and t.user_attrs.get("verdict", "").startswith("kept")]
    return kept[-1] if kept else None


def _time_left(timeout: float | None, started: float) -> float | None:
    """Seconds of the timeout left (0 when spent), or None without one."""
    if timeout is None:
        return None
    return max(0.0, timeout - (time.monotonic() - started))


def _space(space, config: TrainConfig, given: set[str], rows: int) -> dict:
    """The default space for this data and backbone, with the user's file or dict put in; settings given as
    options are fixed, so they leave the space."""
    layers = json.loads((resolve_backbone(config.model) / "config.json").read_text()).get("num_hidden_layers", 0)
    base = default_space(rows, layers)
    if isinstance(space, dict):  # as a file's entries: Range, Choice, a fixed value, or None (not searched)
        base = {k: v for k, v in (base | space).items() if v is not None}
    elif space is not None:
        base = read_space(space, base)
    return {k: v for k, v in base.items() if k not in given}


def _train_defaults(config: TrainConfig, given: set[str], rows: int, label_space, space: dict) -> dict:
    """The searched settings as `finebert train` would choose them for this data (its recipe, its epochs), where
    they lie in the space: the study starts from the default command's model and keeps it until a trial is
    clearly better."""
    from finebert.training.recipes import choose_recipe, recipe_epochs

    chosen = choose_recipe(config, rows, given, multi_label=label_space.multi_label)
    chosen = dataclasses.replace(chosen, epochs=chosen.epochs or recipe_epochs(rows))
    params = {}
    for name, entry in space.items():
        value = getattr(chosen, name)
        if isinstance(entry, Choice) and value in entry.options:
            params[name] = value
        elif isinstance(entry, Range) and value is not None and entry.low <= value <= entry.high:
            params[name] = int(value) if isinstance(entry.low, int) and isinstance(entry.high, int) else value
    return params


def _parent_run(study, mlflow: str, name: str, constant: dict, space: dict) -> str:
    """The study's MLflow run, made once and found again when the study resumes; trials nest under it."""
    from finebert.tracking import Tracker

    known = study.user_attrs.get("mlflow_run")
    if known and known.get("uri") == mlflow:
        return known["id"]
    tracker = Tracker.open(mlflow=mlflow, name=f"{name} (study)")
    tracker.begin(constant | {f"space.{k}": v for k, v in describe(space).items()})
    study.set_user_attr("mlflow_run", {"uri": mlflow, "id": tracker.run_id})
    return tracker.run_id


def _jsonable(values: dict) -> dict:
    return json.loads(json.dumps(values, default=str, sort_keys=True))


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."
