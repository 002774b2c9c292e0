"""Stage 8, the command line: a thin layer over the library. Errors become one line and exit code 2.

    finebert train DATA --output DIR      fine-tune on a CSV/TSV/JSONL file
    finebert evaluate MODEL DATA          accuracy, macro P/R/F1, confusion matrix
    finebert predict MODEL [TEXT...]      labels with confidence (texts, --file or stdin)
    finebert tokenize TEXT                tokens, ids and attention mask
    finebert demo                         the whole workflow on the built-in five reviews
    finebert export MODEL                 ONNX Runtime fp32/int8 engines, validated against PyTorch
    finebert calibrate MODEL DATA         fit each engine's temperature on labelled data
    finebert explain MODEL TEXT           word attributions (integrated gradients), coloured
    finebert audit DATA                   rows whose label is probably wrong (k-fold + confident learning)
    finebert serve MODEL                  HTTP API and web page

Nothing here imports torch at module level, so `finebert --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from finebert.errors import FinebertError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Fine-tune BERT-family encoders for text classification, fast on CPUs.")

TextColumn = typer.Option(None, "--text-column", help="Column holding the text (default: text/sentence/review/...).")
LabelColumn = typer.Option(None, "--label-column", help="Column holding the label (default: label/labels/sentiment/...).")
PairColumn = typer.Option(None, "--text-pair-column", help="Column holding the second text of a sentence pair (default: the model's).")
AsJson = typer.Option(False, "--json", help="Print JSON instead of a table.")
Engine = typer.Option("auto", "--engine", help="auto (fastest validated), pytorch, onnx-fp32 or onnx-int8.")


@app.command()
def train(
    data: Path = typer.Argument(..., help="Training data: .csv, .tsv or .jsonl with a text and a label column."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write the model to."),
    validation: Optional[Path] = typer.Option(None, help="Validation file (default: a stratified split of DATA)."),
    text_column: Optional[str] = TextColumn,
    label_column: Optional[str] = LabelColumn,
    text_pair_column: Optional[str] = typer.Option(None, "--text-pair-column", help="Sentence pairs: the column of the second text."),
    label_names: Optional[str] = typer.Option(None, help="Names for integer labels in numeric order, e.g. negative,positive."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Rows may carry several labels, joined by --label-separator."),
    label_separator: Optional[str] = typer.Option(None, help="Multi-label: the separator between labels in a cell (default ,)."),
    class_weights: Optional[str] = typer.Option(None, help="auto (inverse class frequency) or label=weight pairs, e.g. ham=1,spam=4."),
    long_text: Optional[str] = typer.Option(None, help="Texts over --max-length: truncate (default), head-tail or window."),
    stride: Optional[int] = typer.Option(None, help="window: tokens shared by consecutive chunks (default 32)."),
    chunk_pooling: Optional[str] = typer.Option(None, help="window: a text's logits are the mean (default) or max of its chunks'."),
    model: Optional[str] = typer.Option(None, help="Backbone: a local Hugging Face BERT-family folder or a hub id (default: all-MiniLM-L6-v2)."),
    recipe: Optional[str] = typer.Option(None, help="auto (default: few-shot up to 300 rows, head-first up to 10,000, else fine-tune), few-shot, head-first or fine-tune."),
    contrastive_pairs: Optional[int] = typer.Option(None, help="SetFit's contrastive stage first: same-label and other-label partners per text, e.g. 20 (default 0: none)."),
    label_name_rows: Optional[int] = typer.Option(None, help="Add each label's name (if it has a letter) as a training text this many times (few-shot default 4, else 0)."),
    fine_tuned_share: Optional[float] = typer.Option(None, help="Keep the weights this share of the way from the start (after the head fit) to the fine-tuned ones (WiSE-FT; few-shot default 0.7, else 1)."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the data (default: chosen from the data size)."),
    batch_size: Optional[int] = typer.Option(None, help="Examples per step."),
    learning_rate: Optional[float] = typer.Option(None, help="Peak learning rate."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per text (per chunk with --long-text window)."),
    pooling: Optional[str] = typer.Option(None, help="cls (default), mean or normalized-mean."),
    dropout: Optional[float] = typer.Option(None, help="Dropout rate in every layer (default 0; try 0.1 for small data and several epochs)."),
    freeze_layers: Optional[int] = typer.Option(None, help="Leave the embeddings and this many lowest layers untrained: faster, e.g. 2 (default 0: all trained)."),
    max_time: Optional[float] = typer.Option(None, help="Stop after this many seconds, keeping the best model."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    checkpoint_minutes: Optional[float] = typer.Option(None, help="Save a checkpoint this often (default 5) and at each epoch's end."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last good checkpoint in --output."),
    nproc: int = typer.Option(1, "--nproc", help="Train on this many local processes (DistributedDataParallel under torchrun)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Fine-tune a classifier on DATA and save it to --output."""
    from finebert.training import train as run

    settings = {k: v for k, v in dict(text_column=text_column, label_column=label_column,
                                      text_pair_column=text_pair_column, label_separator=label_separator,
                                      long_text=long_text, stride=stride, chunk_pooling=chunk_pooling, model=model, recipe=recipe,
                                      contrastive_pairs=contrastive_pairs, label_name_rows=label_name_rows, fine_tuned_share=fine_tuned_share, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                      max_length=max_length, pooling=pooling, dropout=dropout, freeze_layers=freeze_layers,
                                      max_time=max_time, seed=seed, checkpoint_minutes=checkpoint_minutes).items()
                if v is not None}
    if multi_label or label_separator is not None:
        settings["multi_label"] = True
    if label_names is not None:
        settings["label_names"] = [name.strip() for name in label_names.split(",")]
    if class_weights is not None:
        settings["class_weights"] = _parse_weights(class_weights)
    if nproc < 1:
        raise FinebertError(f"--nproc {nproc}: use 1 or more processes")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from finebert.distributed import launch
        from finebert.training import check_data

        check_data(data, validation, settings)  # bad input: one line here, not once per process
        raise SystemExit(launch(nproc, _without_option(sys.argv[1:], "--nproc")))
    clf = run(data, output=output, validation=validation, resume=resume, quiet=quiet, **settings)
    if os.environ.get("RANK", "0") != "0":
        return  # one summary, from the lead process
    selected = clf.metrics.get("selected_on")
    summary = f"saved {output} ({clf.metrics['train_seconds']:.0f}s, labels: {', '.join(clf.labels)}"
    if selected:
        summary += f", validation {selected.replace('_', '-')} {clf.metrics['val_' + selected]:.4f}"
    typer.echo(summary + ")")


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


def _parse_weights(text: str):
    if text.strip() == "auto":
        return "auto"
    weights = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise FinebertError(f"--class-weights {text!r}: cannot read {part!r}; use auto or label=weight pairs, e.g. ham=1,spam=4")
    return weights


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="A model folder written by `finebert train`."),
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
    model: Path = typer.Argument(..., help="A model folder written by `finebert train`."),
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
    model: Path = typer.Argument(..., help="A model folder written by `finebert train`."),
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
def audit(
    data: Path = typer.Argument(..., help="Labelled data to check: .csv, .tsv or .jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the suspect rows (original columns + given_label, likely_label, score) to this CSV."),
    folds: int = typer.Option(4, help="k of the k-fold fine-tuning: each row is scored by a model trained without it."),
    epochs: float = typer.Option(1.0, help="Epochs per fold."),
    every_row: bool = typer.Option(False, "--all", help="Write every row, most suspect first, not only the flagged ones."),
    text_column: Optional[str] = TextColumn,
    label_column: Optional[str] = LabelColumn,
    text_pair_column: Optional[str] = typer.Option(None, "--text-pair-column", help="Sentence pairs: the column of the second text."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Rows may carry several labels."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per text."),
    model: Optional[str] = typer.Option(None, help="Backbone (default: all-MiniLM-L6-v2)."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Find rows whose label is probably wrong (k-fold fine-tuning + confident learning)."""
    from finebert.auditing import audit as run

    settings = {k: v for k, v in dict(text_column=text_column, label_column=label_column, model=model, seed=seed,
                                      text_pair_column=text_pair_column, max_length=max_length).items() if v is not None}
    if multi_label:
        settings["multi_label"] = True
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
    model: Path = typer.Argument(..., help="A model folder written by `finebert train`."),
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
            typer.echo(f"{name}: {label} {e[measure]:.4f} ({e['loss_points']:+.2f} points lost), largest probability "
                       f"difference {e['max_prob_diff']:.4f}, ECE {e['ece']:.4f}: {verdict}")
    typer.echo(f"default engine: {info.default_engine}")


@app.command()
def calibrate(
    model: Path = typer.Argument(..., help="A model folder written by `finebert train`."),
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
    model: Path = typer.Argument(..., help="A model folder written by `finebert train`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: Optional[str] = typer.Option(None, envvar="FINEBERT_API_KEY", help="Require this key in the X-API-Key header."),
    engine: str = Engine,
    workers: Optional[int] = typer.Option(None, help="Server processes, each with its own copy of the model and "
                                                     "a share of the cores. Default: one per core (at most 8)."),
):
    """Serve MODEL over HTTP: POST /predict, GET /health, GET /info, a web page at /."""
    from finebert.serving import serve as run

    typer.echo(f"serving {model} at http://{host}:{port}/ (API docs at /docs); Ctrl+C stops", err=True)
    run(model, host=host, port=port, api_key=api_key, engine=engine, workers=workers)


def main() -> None:
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
