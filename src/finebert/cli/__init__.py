"""Stage 8, the command line: a thin layer over the library. Errors become one line and exit code 2.

    finebert train DATA --output DIR      fine-tune on a CSV/TSV/JSONL file
    finebert tune DATA --output DIR       search training settings, keep the best trial's model
    finebert distill TEACHER DATA -o DIR  a smaller student of a trained model, refused if it scores worse
    finebert evaluate MODEL DATA          accuracy, macro P/R/F1, confusion matrix
    finebert predict MODEL [TEXT...]      labels with confidence (texts, --file or stdin)
    finebert tokenize TEXT                tokens, ids and attention mask
    finebert demo                         the whole workflow on the built-in five reviews
    finebert export MODEL                 ONNX Runtime fp32/int8 engines, validated against PyTorch
    finebert calibrate MODEL DATA         fit each engine's temperature on labelled data
    finebert explain MODEL TEXT           word attributions (integrated gradients), coloured
    finebert audit DATA                   rows whose label is probably wrong (k-fold + confident learning)
    finebert serve MODEL                  HTTP API and web page
    finebert label POOL -o PROJECT        label texts in a web page, the model choosing which next

Nothing here imports torch at module level, so `finebert --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from finebert.cli.options import (SETTINGS, AsJson, Engine, LabelColumn, LogDir, MLflow, ModelFolder, PairColumn,
                                  TextColumn, config_options, optional_values)
from finebert.errors import FinebertError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Fine-tune BERT-family encoders for text classification, fast on CPUs.")



@app.command()
@config_options()
def train(
    data: Path = typer.Argument(..., help="Training data: .csv, .tsv or .jsonl with a text and a label column."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write the model to."),
    validation: Optional[Path] = typer.Option(None, help="Validation file (default: a stratified split of DATA)."),
    settings: dict = SETTINGS,  # an option per TrainConfig field (config_options)
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last good checkpoint in --output."),
    nproc: int = typer.Option(1, "--nproc", help="Train on this many local processes (DistributedDataParallel under torchrun)."),
    log_dir: Optional[Path] = LogDir,
    mlflow: Optional[str] = MLflow,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Fine-tune a classifier on DATA and save it to --output."""
    from finebert.training import check_data
    from finebert.training import train as run

    if nproc < 1:
        raise FinebertError(f"--nproc {nproc}: use 1 or more processes")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from finebert.training.distributed import launch

        check_data(data, validation, settings)  # bad input: one line here, not once per process
        raise SystemExit(launch(nproc, _without_option(sys.argv[1:], "--nproc")))
    clf = run(data, output=output, validation=validation, resume=resume, quiet=quiet, log_dir=log_dir, mlflow=mlflow,
              **settings)
    if os.environ.get("RANK", "0") != "0":
        return  # one summary, from the lead process
    selected = clf.metrics.get("selected_on")
    summary = f"saved {output} ({clf.metrics['train_seconds']:.0f}s, labels: {', '.join(clf.labels)}"
    if selected:
        summary += f", validation {selected.replace('_', '-')} {clf.metrics['val_' + selected]:.4f}"
    typer.echo(summary + ")")


@app.command()
@config_options()
def tune(
    data: Path = typer.Argument(..., help="Training data: .csv, .tsv or .jsonl with a text and a label column."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the best trial's model (with trials.csv and report/tuning.html)."),
    trials: int = typer.Option(20, "--trials", "-n", help="Finished trials the study ends with, counting those of an earlier, interrupted run."),
    timeout: Optional[str] = typer.Option(None, "--timeout", help="Stop starting trials after this long, e.g. 30m, 2h or 900 (seconds); a trial in progress is cut to fit."),
    space: Optional[Path] = typer.Option(None, "--space", help="YAML file narrowing or widening the search space: TrainConfig field names, each a range {low, high, log}, a list of choices, one fixed value, or null."),
    validation: Optional[Path] = typer.Option(None, help="Validation file that scores every trial (default: a stratified split of DATA, the same for every trial)."),
    settings: dict = SETTINGS,  # an option per TrainConfig field: given, the same for every trial, not searched
    study: Optional[str] = typer.Option(None, "--study", help="Optuna storage URL (default: sqlite:///OUTPUT.study.db); share one to tune on several machines."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="The study's name in that storage (default: the output folder's name)."),
    log_dir: Optional[Path] = LogDir,
    mlflow: Optional[str] = MLflow,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no line per trial, no summary."),
):
    """Search training settings (an Optuna study; bad trials pruned early) and keep the best trial's model in --output."""
    from finebert.tuning import tune as run

    result = run(data, output=output, trials=trials, timeout=_seconds(timeout), validation=validation, space=space,
                 study=study, study_name=study_name, log_dir=log_dir, mlflow=mlflow, quiet=quiet, **settings)
    if quiet:
        typer.echo(f"saved {output} (trial {result.trial}, {result.objective[4:].replace('_', '-')} {result.value:.4f})")


@app.command()
@config_options()
def distill(
    teacher: Path = typer.Argument(..., help="The teacher: a model folder written by `finebert train` (or tune, or distill)."),
    data: Path = typer.Argument(..., help="Labelled training data, as for `finebert train` (the teacher's columns are looked for first)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write the student to."),
    unlabelled: Optional[Path] = typer.Option(None, "--unlabelled", help="More texts without labels (.txt, .csv, .jsonl): the teacher labels them once and the student learns from them too."),
    layers: Optional[int] = typer.Option(None, "--layers", help="Keep this many of the teacher's layers, spread evenly (default: half, rounded up)."),
    layer_map: Optional[str] = typer.Option(None, "--layer-map", help="The teacher's layers to keep, e.g. 0,2,4."),
    student: Optional[str] = typer.Option(None, "--student", help="Train this backbone instead (a folder or the default's name), with its own tokenizer."),
    alpha: float = typer.Option(0.5, "--alpha", help="The true labels' share of the loss where a row has one; the teacher's probabilities take the rest."),
    temperature: float = typer.Option(2.0, "--temperature", help="Softens both sides' probabilities in the teacher's part of the loss."),
    max_loss: float = typer.Option(1.0, "--max-loss", help="Refuse a student more than this many points of the validation metric under its teacher."),
    force: bool = typer.Option(False, "--force", help="Keep the student whatever it lost against the teacher."),
    validation: Optional[Path] = typer.Option(None, help="Validation file for the guard (default: a stratified split of DATA)."),
    settings: dict = SETTINGS,  # an option per TrainConfig field, for the student
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last good checkpoint."),
    log_dir: Optional[Path] = LogDir,
    mlflow: Optional[str] = MLflow,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Train a smaller (or another) student on a model's answers; refuse it if it scores worse than --max-loss allows."""
    from finebert.config import parse_names
    from finebert.training.distill import distill as run

    mapping = None
    if layer_map is not None:
        try:
            mapping = [int(part) for part in parse_names(layer_map)]
        except ValueError:
            raise FinebertError(f"--layer-map {layer_map!r}: give layer numbers separated by commas, e.g. 0,2,4") from None
    clf = run(teacher, data, output=output, validation=validation, unlabelled=unlabelled, layers=layers,
              layer_map=mapping, student=student, alpha=alpha, temperature=temperature, max_loss=max_loss, force=force,
              resume=resume, quiet=quiet, log_dir=log_dir, mlflow=mlflow, **settings)
    d = clf.metrics["distillation"]
    name = d["metric"].replace("_", "-")
    typer.echo(f"saved {output} (validation {name} {d['student_score']:.4f}, teacher {d['teacher_score']:.4f}, "
               f"{d['points_lost']:+.2f} points lost; {d['speedup']:.1f}x the teacher's speed)")


def _seconds(text: str | None) -> float | None:
    """--timeout 30m / 2h / 90s / 900 -> seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise FinebertError(f"--timeout {text!r}: give a duration such as 30m, 2h, 90s or 900 (seconds)") from None
    if value <= 0:
        raise FinebertError(f"--timeout {text!r}: give a duration above zero")
    return value


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv less `name VALUE` and `name=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip or arg.startswith(name + "="):
            skip = False
            continue
        skip = arg == name
        if not skip:
            out.append(arg)
    return out


@app.command()
def evaluate(
    model: Path = ModelFolder,
    data: Path = typer.Argument(..., help="Labelled data: .csv, .tsv or .jsonl."),
    text_column: Optional[str] = TextColumn,
    label_column: Optional[str] = LabelColumn,
    text_pair_column: Optional[str] = PairColumn,
    engine: str = Engine,
    report_dir: Optional[Path] = typer.Option(None, "--report", help="Also write metrics.json, plots and report.html into this folder."),
    as_json: bool = AsJson,
):
    """Accuracy, macro and per-class precision/recall/F1, calibration, and the confusion matrix on DATA."""
    from finebert.evaluation import evaluate as run
    from finebert.inference import Classifier

    report = run(Classifier.load(model, engine=engine), data, text_column=text_column, label_column=label_column,
                 text_pair_column=text_pair_column, report=report_dir)
    if report_dir is not None:
        typer.echo(f"report written to {report_dir / 'report.html'}", err=True)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if report.problem_type == "multi_label":
        console.print(f"{report.examples} examples  macro-F1 {report.f1:.4f}  micro-F1 {report.micro_f1:.4f}  "
                      f"exact match {report.accuracy:.4f}")
    else:
        console.print(f"{report.examples} examples  accuracy {report.accuracy:.4f}  macro precision "
                      f"{report.precision:.4f}  recall {report.recall:.4f}  F1 {report.f1:.4f}")
    c = report.calibration
    console.print(f"calibration ({report.engine}): ECE {c['ece_after']:.4f} (uncalibrated {c['ece_before']:.4f}), "
                  f"log loss {c['log_loss_after']:.4f} (uncalibrated {c['log_loss_before']:.4f})")
    per_class = Table("label", "precision", "recall", "F1", "support", title="per class")
    for name, row in report.per_class.items():
        per_class.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    console.print(per_class)
    if report.confusion_matrix is not None:
        table = Table(title="confusion matrix (rows: true, columns: predicted)")
        table.add_column("")
        for name in report.labels:
            table.add_column(name, justify="right")
        for name, row in zip(report.labels, report.confusion_matrix):
            table.add_row(name, *map(str, row))
        console.print(table)


@app.command()
def predict(
    model: Path = ModelFolder,
    texts: Optional[List[str]] = typer.Argument(None, help="Texts to classify (none: --file, or lines on stdin)."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Texts from a .csv/.tsv/.jsonl/.txt file."),
    text_pair: Optional[List[str]] = typer.Option(None, "--text-pair", help="Sentence-pair models: the second text, once per TEXT."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="With --file: stream every row, input columns kept, into this .csv, .jsonl or .parquet."),
    text_column: Optional[str] = TextColumn,
    text_pair_column: Optional[str] = PairColumn,
    engine: str = Engine,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (with --output)."),
    as_json: bool = AsJson,
):
    """Classify texts: label and confidence for each (every label over its threshold for multi-label models)."""
    from finebert.data import read_dataset
    from finebert.inference import Classifier

    if output is not None and file is None:
        raise FinebertError("--output writes the scored rows of --file; give the input with --file")
    clf = Classifier.load(model, engine=engine)
    if output is not None:
        from finebert.streaming import predict_file

        rows = predict_file(clf, file, output, text_column=text_column, text_pair_column=text_pair_column, quiet=quiet)
        typer.echo(f"scored {rows} rows into {output}", err=True)
        return
    pairs = text_pair or None
    if file is not None:
        data = read_dataset(file, text_column=text_column, require_labels=False,
                            text_pair_column=text_pair_column or clf.config.text_pair_column,
                            model_columns=(clf.config.text_column, None))
        batch, pairs = data.texts, data.pairs
    elif texts:
        batch = list(texts)
    else:
        if sys.stdin.isatty():
            raise FinebertError("no texts given; pass them as arguments, with --file, or on stdin one per line")
        batch = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    predictions = clf.classify(batch, pairs)
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in predictions], indent=2))
        return
    for p in predictions:
        prefix = f"{p.text}\t" if len(predictions) > 1 else ""
        if clf.label_space.multi_label:
            typer.echo(prefix + ", ".join(f"{name} ({p.probabilities[name]:.2f})" for name in p.labels))
        else:
            typer.echo(f"{prefix}{p.label} (confidence {p.confidence:.2f})")


@app.command()
def explain(
    model: Path = ModelFolder,
    texts: List[str] = typer.Argument(..., help="Texts to explain."),
    text_pair: Optional[List[str]] = typer.Option(None, "--text-pair", help="Sentence-pair models: the second text, once per TEXT."),
    label: Optional[str] = typer.Option(None, help="Explain this label instead of the predicted one."),
    as_json: bool = AsJson,
):
    """Which words pushed each prediction, and which way (integrated gradients): green for, red against."""
    from finebert.inference import Classifier

    clf = Classifier.load(model)
    explanations = clf.explain(list(texts), text_pair or None, label=label)
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in explanations], indent=2))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    for e in explanations:
        line = Text(f"{e.label}: ", style="bold")
        top = max(map(abs, e.scores), default=0) or 1.0
        for word, score in zip(e.words, e.scores):
            shade = int(255 - 175 * min(1.0, abs(score) / top))  # stronger attribution, deeper colour
            colour = f"rgb({shade},255,{shade})" if score > 0 else f"rgb(255,{shade},{shade})"
            line.append(word, style=f"black on {colour}")
            line.append(" ")
        console.print(line)
        strongest = sorted(zip(e.words, e.scores), key=lambda ws: -abs(ws[1]))[:5]
        console.print("  strongest: " + ", ".join(f"{w} {s:+.3f}" for w, s in strongest), style="dim")


@app.command()
@config_options("text_column", "label_column", "text_pair_column", "label_names", "multi_label", "label_separator",
                "long_text", "max_length", "model", "seed")
def audit(
    data: Path = typer.Argument(..., help="Labelled data to check: .csv, .tsv or .jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the suspect rows (original columns + given_label, likely_label, score) to this CSV."),
    folds: int = typer.Option(4, help="k of the k-fold fine-tuning: each row is scored by a model trained without it."),
    epochs: float = typer.Option(1.0, help="Epochs per fold."),
    every_row: bool = typer.Option(False, "--all", help="Write every row, most suspect first, not only the flagged ones."),
    settings: dict = SETTINGS,  # TrainConfig options for each fold's training (config_options)
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Find rows whose label is probably wrong (k-fold fine-tuning + confident learning)."""
    from finebert.auditing import audit as run

    result = run(data, folds=folds, epochs=epochs, quiet=quiet, **settings)
    if output is not None:
        result.write(output, every_row=every_row)
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"{len(result.flagged)} of {len(result.rows)} rows look mislabelled"
                  + (f"; written to {output}, most suspect first" if output else ""))
    table = Table("row", "given", "likely", "score", "text", title="most suspect")
    for i in result.ranking()[:10]:
        table.add_row(str(i + 1), result.given[i], result.likely[i], f"{result.scores[i]:.3f}",
                      str(result.rows[i].get(result.text_column, ""))[:70])
    console.print(table)


@app.command()
def tokenize(
    text: str = typer.Argument(..., help="The text to tokenize."),
    max_length: Optional[int] = typer.Option(None, help="Pad (and truncate) to this many tokens."),
    model: Optional[str] = typer.Option(None, help="Backbone or model folder whose tokenizer to use."),
    as_json: bool = AsJson,
):
    """Show WordPiece tokens, input ids and the attention mask of TEXT."""
    from finebert.config import DEFAULT_BACKBONE, resolve_backbone
    from finebert.tokenization import Tokenizer

    tokenizer = Tokenizer(resolve_backbone(model or DEFAULT_BACKBONE), max_length or 512)
    out = tokenizer.explain(text, pad_to=max_length)
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo("tokens:         " + " ".join(out["tokens"]))
    typer.echo("input_ids:      " + " ".join(map(str, out["input_ids"])))
    typer.echo("attention_mask: " + " ".join(map(str, out["attention_mask"])))


@app.command()
def demo():
    """Walk through the whole workflow on the five built-in reviews (under a minute)."""
    from finebert.demo import run_demo

    run_demo()


@app.command()
def export(
    model: Path = ModelFolder,
    int8: bool = typer.Option(True, "--int8/--fp32", help="Also build the int8 engine (default) or fp32 only."),
    validate: Optional[Path] = typer.Option(None, help="Labelled data to validate on (default: the training validation data)."),
    max_loss: float = typer.Option(0.5, help="Points of accuracy (macro-F1 for multi-label) int8 may lose against PyTorch and still be the default."),
    max_prob_diff: float = typer.Option(0.1, help="Largest probability difference from PyTorch an engine may show and still be the default."),
    text_column: Optional[str] = TextColumn,
    label_column: Optional[str] = LabelColumn,
):
    """Export ONNX engines into MODEL and choose the fastest one that keeps its accuracy."""
    from finebert.export import export as run

    info = run(model, int8=int8, validate=validate, max_loss=max_loss, max_prob_diff=max_prob_diff,
               text_column=text_column, label_column=label_column)
    engines = info.engines
    measure = engines["validation"]["measure"]
    label = measure.replace("_", "-")
    typer.echo(f"validated on {engines['validation']['examples']} examples: pytorch {label} "
               f"{engines['pytorch'][measure]:.4f}, ECE {engines['pytorch']['ece']:.4f}")
    for name in ("onnx-fp32", "onnx-int8"):
        if name in engines:
            e = engines[name]
            verdict = "ok" if e["validated"] else "too far from PyTorch, not used by default"
            typer.echo(f"{name}{_int8_how(e)}: {label} {e[measure]:.4f} ({e['loss_points']:+.2f} points lost), largest "
                       f"probability difference {e['max_prob_diff']:.4f}, ECE {e['ece']:.4f}: {verdict}")
    typer.echo(f"default engine: {info.default_engine}")


def _int8_how(figures: dict) -> str:
    """How export made its int8 engine, when it took more than the whole graph in int8."""
    parts = [f"smoothed (alpha {figures['smoothing']})"] if figures.get("smoothing") else []
    if figures.get("fp32_nodes"):
        parts.append(f"{len(figures['fp32_nodes'])} of its matrix products in fp32")
    tried = len(figures.get("tries", [])) - 1
    if not parts and tried <= 0:
        return ""
    return f" ({', '.join(parts) or 'whole graph'}; {tried + 1} tried)"


@app.command()
def calibrate(
    model: Path = ModelFolder,
    data: Path = typer.Argument(..., help="Labelled data to fit the temperature on (not the training data)."),
    text_column: Optional[str] = TextColumn,
    label_column: Optional[str] = LabelColumn,
):
    """Fit each engine's temperature on DATA, so confidences match accuracy; prints ECE before and after."""
    from finebert.calibration import recalibrate

    info = recalibrate(model, data, text_column=text_column, label_column=label_column)
    for engine, c in info.calibration.items():
        t = c["temperature"]
        shown = f"{t:.3f}" if isinstance(t, float) else "per label " + ", ".join(f"{v:.2f}" for v in t)
        typer.echo(f"{engine}: temperature {shown}; ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}, "
                   f"log loss {c['log_loss_before']:.4f} -> {c['log_loss_after']:.4f} on {c['examples']} examples")


@app.command()
def serve(
    model: Path = ModelFolder,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: Optional[str] = typer.Option(None, envvar="FINEBERT_API_KEY", help="Require this key in the X-API-Key header."),
    engine: str = Engine,
    workers: Optional[int] = typer.Option(None, help="Server processes, each with its own copy of the model and "
                                                     "a share of the cores. Default: one per core (at most 8)."),
):
    """Serve MODEL over HTTP: POST /predict, GET /health, GET /info, a web page at /."""
    from finebert.serving import serve as run  # without the [serve] extra: one line saying so, and nothing else

    run(model, host=host, port=port, api_key=api_key, engine=engine, workers=workers,
        on_ready=lambda: typer.echo(f"serving {model} at http://{host}:{port}/ (API docs at /docs); Ctrl+C stops",
                                    err=True))


@app.command()
def label(
    pool: Optional[Path] = typer.Argument(None, help="Texts to label: .txt (one per line), .csv or .jsonl (a text "
                                                     "column). Left out: resume the project in --output."),
    output: Path = typer.Option(..., "--output", "-o", help="The project folder: labels.jsonl, the queue, model/."),
    labels: Optional[str] = typer.Option(None, help="The labels, comma-separated, in the order of keys 1-9, e.g. "
                                                    "negative,positive."),
    seed_data: Optional[Path] = typer.Option(None, help="A labelled file to start from (read when the project starts)."),
    multi_label: Optional[bool] = typer.Option(None, "--multi-label", help="Several labels per text."),
    strategy: Optional[str] = typer.Option(None, help="random (default: a seeded shuffle, which measured best so far) or active (the model chooses)."),
    candidates: Optional[int] = typer.Option(None, help="A larger pool offers a seeded sample of this many texts "
                                                        "(default 20000)."),
    model: Optional[str] = typer.Option(None, "--model", help="The backbone to fine-tune (default: the built-in one)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (default 42)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: Optional[str] = typer.Option(None, envvar="FINEBERT_API_KEY", help="Require this key in the X-API-Key header."),
    fine_tune: bool = typer.Option(True, help="Fine-tune in the background now and then (--no-fine-tune: the fast head only)."),
):
    """Label POOL in a web page, the model choosing which text next and training while you label."""
    from finebert.config import parse_names
    from finebert.labelling.server import label as run

    def ready(session):
        progress = session.progress()
        typer.echo(f"labelling {progress['offered']} texts with {', '.join(progress['labels'])} "
                   f"({progress['labelled']} labelled so far) at http://{host}:{port}/ ; Ctrl+C stops, "
                   f"run the same command to go on", err=True)

    def embedding(n):
        typer.echo(f"embedding {n} texts with the backbone (once: they are cached in {output})", err=True)

    run(pool, output, labels=parse_names(labels) if labels else None, seed_data=seed_data, host=host, port=port,
        api_key=api_key, fine_tune=fine_tune, on_ready=ready, on_embed=embedding, multi_label=multi_label, strategy=strategy,
        candidates=candidates, model=model, seed=seed)


def main() -> None:
    sys.argv = optional_values(sys.argv)
    try:
        app()
    except FinebertError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130)


if __name__ == "__main__":
    main()
