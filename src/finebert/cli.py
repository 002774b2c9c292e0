"""Stage 8, the command line: a thin layer over the library. Errors become one line and exit code 2.

    finebert train DATA --output DIR      fine-tune on a CSV/TSV/JSONL file
    finebert evaluate MODEL DATA          accuracy, macro P/R/F1, confusion matrix
    finebert predict MODEL [TEXT...]      labels with confidence (texts, --file or stdin)
    finebert tokenize TEXT                tokens, ids and attention mask
    finebert demo                         the whole workflow on the built-in five reviews
    finebert export MODEL                 ONNX Runtime fp32/int8 engines, validated against PyTorch
    finebert serve MODEL                  HTTP API and web page

Nothing here imports torch at module level, so `finebert --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from finebert.errors import FinebertError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Fine-tune BERT-family encoders for text classification, fast on CPUs.")

TextColumn = typer.Option(None, "--text-column", help="Column holding the text (default: text/sentence/review/...).")
LabelColumn = typer.Option(None, "--label-column", help="Column holding the label (default: label/sentiment/class/...).")
AsJson = typer.Option(False, "--json", help="Print JSON instead of a table.")
Engine = typer.Option("auto", "--engine", help="auto (fastest validated), pytorch, onnx-fp32 or onnx-int8.")


@app.command()
def train(
    data: Path = typer.Argument(..., help="Training data: .csv, .tsv or .jsonl with a text and a label column."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write the model to."),
    validation: Optional[Path] = typer.Option(None, help="Validation file (default: a stratified split of DATA)."),
    text_column: Optional[str] = TextColumn,
    label_column: Optional[str] = LabelColumn,
    label_names: Optional[str] = typer.Option(None, help="Names for integer labels in order, e.g. negative,positive."),
    model: Optional[str] = typer.Option(None, help="Backbone: a local Hugging Face BERT-family folder or a hub id (default: all-MiniLM-L6-v2)."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the data."),
    batch_size: Optional[int] = typer.Option(None, help="Examples per step."),
    learning_rate: Optional[float] = typer.Option(None, help="Peak learning rate."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per text; longer texts are truncated."),
    pooling: Optional[str] = typer.Option(None, help="cls (default) or mean."),
    dropout: Optional[float] = typer.Option(None, help="Dropout rate in every layer (default 0; try 0.1 for small data and several epochs)."),
    max_time: Optional[float] = typer.Option(None, help="Stop after this many seconds, keeping the best model."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Fine-tune a classifier on DATA and save it to --output."""
    from finebert.training import train as run

    settings = {k: v for k, v in dict(text_column=text_column, label_column=label_column, model=model,
                                      epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                      max_length=max_length, pooling=pooling, dropout=dropout,
                                      max_time=max_time, seed=seed).items()
                if v is not None}
    if label_names is not None:
        settings["label_names"] = [name.strip() for name in label_names.split(",")]
    clf = run(data, output=output, validation=validation, quiet=quiet, **settings)
    accuracy = clf.metrics.get("val_accuracy")
    summary = f"saved {output} ({clf.metrics['train_seconds']:.0f}s, labels: {', '.join(clf.labels)}"
    typer.echo(summary + (f", validation accuracy {accuracy:.4f})" if accuracy is not None else ")"))


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="A model folder written by `finebert train`."),
    data: Path = typer.Argument(..., help="Labelled data: .csv, .tsv or .jsonl."),
    text_column: Optional[str] = TextColumn,
    label_column: Optional[str] = LabelColumn,
    engine: str = Engine,
    as_json: bool = AsJson,
):
    """Accuracy, macro precision/recall/F1 and the confusion matrix on DATA."""
    from finebert.evaluation import evaluate as run
    from finebert.inference import Classifier

    report = run(Classifier.load(model, engine=engine), data, text_column=text_column, label_column=label_column)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{report.examples} examples  accuracy {report.accuracy:.4f}  macro precision "
                  f"{report.precision:.4f}  recall {report.recall:.4f}  F1 {report.f1:.4f}")
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
    text_column: Optional[str] = TextColumn,
    engine: str = Engine,
    as_json: bool = AsJson,
):
    """Classify texts: label and confidence for each."""
    from finebert.data import read_dataset
    from finebert.inference import Classifier

    if file is not None:
        batch = read_dataset(file, text_column=text_column, require_labels=False).texts
    elif texts:
        batch = list(texts)
    else:
        if sys.stdin.isatty():
            raise FinebertError("no texts given; pass them as arguments, with --file, or on stdin one per line")
        batch = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    predictions = Classifier.load(model, engine=engine).classify(batch)
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in predictions], indent=2))
        return
    for p in predictions:
        prefix = f"{p.text}\t" if len(predictions) > 1 else ""
        typer.echo(f"{prefix}{p.label} (confidence {p.confidence:.2f})")


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
    max_loss: float = typer.Option(0.5, help="Accuracy points int8 may lose against PyTorch and still be the default."),
    text_column: Optional[str] = TextColumn,
    label_column: Optional[str] = LabelColumn,
):
    """Export ONNX engines into MODEL and choose the fastest one that keeps its accuracy."""
    from finebert.export import export as run

    info = run(model, int8=int8, validate=validate, max_loss=max_loss, text_column=text_column, label_column=label_column)
    engines = info["engines"]
    typer.echo(f"validated on {engines['validation']['examples']} examples: pytorch {engines['pytorch']['accuracy']:.4f}")
    for name in ("onnx-fp32", "onnx-int8"):
        if name in engines:
            e = engines[name]
            verdict = "ok" if e["validated"] else f"loses more than {max_loss} points, not used by default"
            typer.echo(f"{name}: accuracy {e['accuracy']:.4f} ({e['loss_points']:+.2f} points lost, {verdict})")
    typer.echo(f"default engine: {info['default_engine']}")


@app.command()
def serve(
    model: Path = typer.Argument(..., help="A model folder written by `finebert train`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: Optional[str] = typer.Option(None, envvar="FINEBERT_API_KEY", help="Require this key in the X-API-Key header."),
    engine: str = Engine,
):
    """Serve MODEL over HTTP: POST /predict, GET /health, GET /info, a web page at /."""
    from finebert.serving import serve as run

    typer.echo(f"serving {model} at http://{host}:{port}/ (API docs at /docs); Ctrl+C stops", err=True)
    run(model, host=host, port=port, api_key=api_key, engine=engine)


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
