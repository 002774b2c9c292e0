"""What a tuning study leaves and says: the kept model, trials.csv, the plots, the progress bar and the summary.

    BEST/                     the best finished trial's model, an ordinary finebert folder
    BEST/trials.csv           every trial: number, state, score, epochs run, seconds, settings
    BEST/report/trials.png    the score of every trial, and the best so far
    BEST/report/importances.png  how much each setting mattered (Optuna's fANOVA importances)
    BEST/report/tuning.html   both plots and the table, self-contained
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

FINISHED = ("COMPLETE", "PRUNED")  # the states that count towards --trials
MIN_FOR_IMPORTANCES = 4  # complete trials before the importances plot: fewer say nothing


def count_finished(study) -> int:
    return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))


def rows(study) -> list[dict]:
    """One record per trial, in order: its number, state, score (a pruned trial: its last epoch's), epochs run,
    seconds, the machine and process that ran it, and its settings."""
    out = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        out.append({"trial": t.number, "state": t.state.name.lower(), "value": value,
                    "epochs_run": t.user_attrs.get("epochs_run", len(t.intermediate_values)),
                    "best_epoch": t.user_attrs.get("best_epoch"), "seconds": t.user_attrs.get("seconds"),
                    "kept": t.user_attrs.get("verdict", ""), "host": t.user_attrs.get("host", ""),
                    "error": t.user_attrs.get("error", ""), **t.params})
    return out


def keep(scratch: Path, output: Path, trial: int, objective: str, value: float, name: str, url: str) -> None:
    """The trial's model folder (`scratch`) becomes `output`, with the trial named in its finebert.json."""
    from finebert.model_folder import read_info, replace_folder, write_info

    info = read_info(scratch)
    info.metrics |= {"tuning_trial": trial, "tuning_objective": objective, "tuning_value": value,
                     "tuning_study": f"{url} (study {name})"}
    write_info(scratch, info)
    replace_folder(scratch, output)


def write(study, output: Path, objective: str, space: dict) -> None:
    """trials.csv and the plots into the kept model's folder (if a trial has finished yet)."""
    if not output.is_dir():
        return
    records = rows(study)
    names = list(space)
    columns = ["trial", "state", "value", "epochs_run", "best_epoch", "seconds", "kept", "host", "error"] + names
    with open(output / "trials.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    report = output / "report"
    report.mkdir(exist_ok=True)
    plots = {"trials.png": _scores(records, objective)}
    importances = _importances(study)
    if importances:
        plots["importances.png"] = _bars(importances)
    for file, figure in plots.items():
        figure.savefig(report / file, dpi=110, bbox_inches="tight")
    (report / "tuning.html").write_text(_html(records, objective, columns, report, list(plots)), encoding="utf-8")


def _importances(study) -> dict[str, float]:
    """Optuna's fANOVA parameter importances over the completed trials; empty until MIN_FOR_IMPORTANCES of them."""
    import warnings

    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < MIN_FOR_IMPORTANCES:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError, ZeroDivisionError):  # nothing varies across the trials
        return {}


def _scores(records: list[dict], objective: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.4))
    ax = fig.subplots()
    for state, marker, color in (("complete", "o", "#2b7de9"), ("pruned", "x", "#b00020")):
        points = [(r["trial"], r["value"]) for r in records if r["state"] == state and r["value"] is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=color, label=state)
    best, line = None, []
    for r in records:
        if r["state"] == "complete" and r["value"] is not None:
            best = r["value"] if best is None else max(best, r["value"])
        line.append((r["trial"], best))
    line = [(x, y) for x, y in line if y is not None]
    if line:
        ax.step(*zip(*line), where="post", color="#3aa655", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective.replace("_", " "))
    ax.legend(frameon=False, fontsize="small")
    ax.set_title("Score per trial")
    return fig


def _bars(importances: dict[str, float]):
    from matplotlib.figure import Figure

    names = list(importances)[::-1]
    fig = Figure(figsize=(6, 0.4 * len(names) + 1))
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="#2b7de9")
    ax.set_xlabel("importance (share of the score's variance)")
    ax.set_title("Which settings mattered")
    return fig


def _html(records: list[dict], objective: str, columns: list[str], report: Path, images: list[str]) -> str:
    from finebert.report import inline_figures

    e = html.escape
    figures = inline_figures(report, images)
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{e(_cell(r.get(c)))}</td>" for c in columns) + "</tr>" for r in records)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>finebert tuning: {e(objective)}</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: .25rem .5rem; }}
th {{ background: #f4f6fa; }} figure {{ display: inline-block; margin: .5rem; }} img {{ max-width: 33rem; }}</style>
</head><body><h1>finebert tuning</h1>
<p>{len(records)} trials, scored by {e(objective.replace("_", " "))} on the validation data.
The model in this folder is the kept trial's: the first trial ran the default command's settings, and a later
one replaced the model kept only when better by more than one standard error of the difference (column kept).</p>
{figures}<h2>Trials</h2><table><tr>{head}</tr>{body}</table></body></html>
"""


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- what the terminal shows ---------------------------------------------------------------------------
class Progress:
    """A bar over the study's trials with the best score so far, and a line per trial."""

    def __init__(self, study, total: int, quiet: bool):
        from finebert.progress import progress_bar

        self.bar = progress_bar(total=total, initial=min(total, count_finished(study)), unit="trial", desc="tuning",
                                disable=quiet, smoothing=0)
        self.quiet = quiet

    def trial_done(self, study, trial, objective: str, output: Path, space: dict) -> None:
        write(study, output, objective, space)
        record = next(r for r in rows(study) if r["trial"] == trial.number)
        if record["state"] in ("complete", "pruned"):
            self.bar.update(1)
        best = [r["value"] for r in rows(study) if r["state"] == "complete"]
        if best:
            self.bar.set_postfix(best=f"{max(best):.4f}")
        if not self.quiet:
            self.bar.write(describe_trial(record, objective, list(trial.params)))

    def close(self) -> None:
        self.bar.close()


def describe_trial(record: dict, objective: str, names: list[str]) -> str:
    """trial 3 pruned at epoch 1: accuracy 0.8021 (learning_rate 3.1e-05, epochs 4, ...), 23s"""
    drawn = ", ".join(f"{n} {_cell(record.get(n))}" for n in names)
    if record["state"] == "fail":
        return f"trial {record['trial']} failed: {record['error']} ({drawn})"
    state = f"pruned at epoch {record['epochs_run']}" if record["state"] == "pruned" else "done"
    score = f"{objective[4:].replace('_', '-')} {record['value']:.4f}" if record["value"] is not None else "no score"
    seconds = f", {record['seconds']:.0f}s" if record.get("seconds") is not None else ""
    kept = f"; {record['kept']}" if record.get("kept") else ""
    return f"trial {record['trial']} {state}: {score} ({drawn}){seconds}{kept}"


def summary(study, objective: str, kept, here: int | None, output: Path) -> None:
    """A table of the finished trials, best first, and which trial's model is kept, and why. `kept`: the study's
    kept trial; `here`: the trial whose model is in `output` (they differ where another machine kept a later one)."""
    from rich.console import Console
    from rich.table import Table

    records = [r for r in rows(study) if r["state"] in ("complete", "pruned")]
    records.sort(key=lambda r: (r["state"] != "complete", -(r["value"] or 0)))
    names = list(kept.params)
    table = Table("trial", "state", objective[4:].replace("_", "-"), "epochs", "seconds", *names,
                  title=f"{len(records)} trials, best first")
    for r in records:
        table.add_row(str(r["trial"]), r["state"], _cell(r["value"]), str(r["epochs_run"]), _cell(r["seconds"]),
                      *(_cell(r.get(n)) for n in names))
    console = Console(stderr=True)
    if not console.is_terminal:  # a log file: wide enough for every column
        console.width = 220
    console.print(table)
    metric = objective[4:].replace("_", "-")
    where = f"saved {output} (trial {kept.number}, {metric} {kept.value:.4f})"
    top = max((t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"), key=lambda t: t.value)
    if top.value > kept.value:
        where += f"; trial {top.number} read {metric} {top.value:.4f} ({top.user_attrs.get('verdict', '')})"
    if here is not None and here != kept.number:
        where += (f"; the kept trial ran on another machine ({kept.user_attrs.get('host', '?')}), so this folder "
                  f"holds trial {here}, kept among those run here")
    console.print(where)


def finish_parent(uri: str, run_id: str, study, output: Path, objective: str, kept) -> None:
    """The study's MLflow run: the kept trial and its score, trials.csv and the kept model folder (report/ included)."""
    from finebert.tracking import Tracker

    Tracker.open(mlflow=uri, run_id=run_id).end(output, {f"kept_{objective}": kept.value, "kept_trial": kept.number,
                                                         "trials": count_finished(study)}, step=len(study.trials))
