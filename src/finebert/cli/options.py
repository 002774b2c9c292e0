"""Command-line options made from TrainConfig's fields, so that each setting is described once (config.setting).

    @app.command()
    @config_options()                     # every field with option=True, placed where `settings` stands
    def train(data: Path, settings: dict = SETTINGS, resume: bool = ...):
        ...                               # settings: {field: value} for the options given, parsed

    @config_options("model", "seed")      # only these fields (the audit command)

An option left out is not in `settings`, so the recipes can tell a value given from a default.
Typer reads the command's signature; the decorator writes that signature. Importing this imports no torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Optional

import typer

from finebert.config import TrainConfig

SETTINGS: dict = {}  # the default of a command's `settings` parameter: where the config options go


def option_fields(names: tuple[str, ...] = ()) -> list[dataclasses.Field]:
    """TrainConfig's fields that are options (metadata option=True), in field order; or those named, in that order."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if names:
        return [fields[name] for name in names]
    return [f for f in fields.values() if f.metadata.get("option")]


def _parameter(field: dataclasses.Field) -> inspect.Parameter:
    """--field-name for a TrainConfig field: a flag for a bool, else an optional value of the field's type."""
    flag = "--" + field.name.replace("_", "-")
    kind = typing.get_type_hints(TrainConfig)[field.name]
    if kind is bool:
        return inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=bool,
                                 default=typer.Option(False, flag, help=field.metadata["help"]))
    if field.metadata.get("parse") is not None:  # read as text, turned into the value by the field's parser
        kind = str
    else:  # `int | None` -> int
        kind = next(t for t in typing.get_args(kind) or (kind,) if t is not type(None))
    return inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[kind],
                             default=typer.Option(None, flag, help=field.metadata["help"]))


def config_options(*names: str):
    """Decorator: the command gets an option per TrainConfig field (or per field named), in place of its
    `settings` parameter, which receives {field: value} for the options given."""
    fields = option_fields(names)

    def decorate(command):
        signature = inspect.signature(command)
        own = list(signature.parameters.values())
        at = [p.name for p in own].index("settings")
        parameters = own[:at] + [_parameter(f) for f in fields] + own[at + 1:]

        @functools.wraps(command)
        def run(**values):
            given = {f.name: values.pop(f.name) for f in fields}
            return command(**values, settings=settings_from(given))

        run.__signature__ = signature.replace(parameters=parameters)
        return run

    return decorate


def settings_from(values: dict) -> dict:
    """TrainConfig settings from option values: those not given (None, or a flag left off) are left out;
    text is parsed where the field says how. A label separator implies multi-label data."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    settings = {}
    for name, value in values.items():
        if value is None or value is False:
            continue
        parse = fields[name].metadata.get("parse")
        settings[name] = parse(value) if parse else value
    if "label_separator" in settings:
        settings["multi_label"] = True
    return settings


# Arguments and options of the commands that use a trained model.
ModelFolder = typer.Argument(..., help="A model folder written by `finebert train`.")
TextColumn = typer.Option(None, "--text-column", help=TrainConfig.__dataclass_fields__["text_column"].metadata["help"])
LabelColumn = typer.Option(None, "--label-column", help=TrainConfig.__dataclass_fields__["label_column"].metadata["help"])
PairColumn = typer.Option(None, "--text-pair-column", help="Column holding the second text of a sentence pair (default: the model's).")
AsJson = typer.Option(False, "--json", help="Print JSON instead of a table.")
Engine = typer.Option("auto", "--engine", help="auto (fastest validated), pytorch, onnx-fp32 or onnx-int8.")

# Tracking, on the commands that train (finebert.tracking); both off unless given.
LogDir = typer.Option(None, "--log-dir", help="Write TensorBoard event files here: loss and learning rate per step, "
                                               "validation scores per epoch, the settings (needs the track extra).")
MLflow = typer.Option(None, "--mlflow", metavar="[URI]",
                      help="Log settings, metrics, the report and the model folder to MLflow: to URI (such as "
                           "http://host:5000 or sqlite:///runs.db), or alone for a local ./mlflow.db (needs the track extra).")


def optional_values(argv: list[str], name: str = "--mlflow") -> list[str]:
    """`--mlflow` takes a value only when one follows that looks like a URI (has "://"), or as --mlflow=VALUE;
    alone, it means MLflow's local default. Typer has no options of optional value, so argv is mended here."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == name and (i + 1 == len(argv) or "://" not in argv[i + 1]):
            out[-1] = f"{name}="
    return out
