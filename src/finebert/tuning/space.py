"""The search space: which TrainConfig fields a tuning study varies, and over what.

    space = default_space(rows=1_800, layers=6)     # learning rate, epochs, batch size, warmup, dropout, ...
    space = read_space("space.yaml", space)         # narrowed or widened by the user's file
    settings = sample(trial, space)                 # one trial's values: {"learning_rate": 1.3e-4, ...}

A space file (YAML) names TrainConfig fields; each entry replaces the default space's entry of that name:

    learning_rate: {low: 1.0e-5, high: 3.0e-4, log: true}   # a range (whole numbers if both ends are)
    batch_size: [16, 32]                                     # a choice
    dropout: 0.1                                             # one value: fixed, not searched
    freeze_layers: null                                      # not searched: the recipe's value
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path

from finebert.config import TrainConfig
from finebert.errors import ConfigError, FinebertError

# Fields that describe the data or how it is held out, not how to train on it: a study scores every trial on the
# same rows with the same labels, so these are never searched.
NOT_SEARCHED = frozenset({"text_column", "label_column", "text_pair_column", "label_names", "multi_label",
                          "label_separator", "validation_split", "validation_max_rows", "max_time",
                          "checkpoint_minutes"})


@dataclass(frozen=True)
class Range:
    """Numbers from low to high (whole numbers if both ends are ints); log: sampled evenly in log scale."""

    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        return f"{self.low:g} to {self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Choice:
    """One of a few values."""

    options: tuple

    def describe(self) -> str:
        return ", ".join(map(str, self.options))


def default_space(rows: int, layers: int) -> dict[str, Range | Choice]:
    """The space searched unless a space file says otherwise, for `rows` training rows and a backbone of
    `layers` layers. Centred on the recipes' values (training/recipes.py), wide enough to move them."""
    from finebert.training.recipes import FEW_SHOT_MAX_ROWS, recipe_epochs

    small = rows <= FEW_SHOT_MAX_ROWS
    epochs = recipe_epochs(rows)  # what `finebert train` would run: 4 at 2,000 rows, 1 from 19,200
    space = {
        "learning_rate": Range(3e-5, 1e-3, log=True),  # the recipes use 1e-4 to 3e-4 (with layer-wise decay 0.8)
        "epochs": Range(5, 30) if small else Range(1, int(epochs) + 1),
        "batch_size": Choice((8, 16, 32)) if small else Choice((16, 32, 64)),
        "warmup_ratio": Range(0.0, 0.2),
        "dropout": Range(0.0, 0.2),
        "pooling": Choice(("cls", "mean", "normalized-mean")),
        "recipe": Choice(("few-shot", "head-first", "fine-tune")) if small else Choice(("head-first", "fine-tune")),
    }
    if layers > 1:
        space["freeze_layers"] = Range(0, min(2, layers - 1))
    return space


def read_space(path: str | Path, base: dict[str, Range | Choice]) -> dict[str, Range | Choice]:
    """`base` with the entries of a YAML space file (see the module's docstring) put in, each checked: a TrainConfig
    field that can be searched, a range that is not empty, values TrainConfig accepts. Fixed values are returned
    as they are (not Range or Choice): the caller trains every trial with them."""
    import yaml

    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the space file ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); see `finebert tune --help` for the format") from None
    if entries is None:
        entries = {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: give one entry per setting, e.g. 'learning_rate: {{low: 1.0e-5, high: 3.0e-4, log: true}}'")
    space = dict(base)
    for name, value in entries.items():
        entry = parse_entry(path, name, value)
        if entry is None:
            space.pop(name, None)
        else:
            space[name] = entry
    return space


def parse_entry(path: Path, name, value):
    """One entry of a space file: a Range, a Choice, a fixed value, or None (not searched)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    where = f"{path}: {name}"
    if not isinstance(name, str) or name not in fields:
        names = sorted(fields - NOT_SEARCHED)
        initials = [n for n in names if "".join(w[0] for w in n.split("_")) == str(name)]  # lr -> learning_rate
        near = initials or difflib.get_close_matches(str(name), names, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        raise ConfigError(f"{where}: not a setting; {hint}names are TrainConfig fields such as learning_rate, epochs, "
                          "batch_size, warmup_ratio, dropout, pooling, recipe, freeze_layers")
    if name in NOT_SEARCHED:
        raise ConfigError(f"{where}: describes the data or the run, so it cannot be searched; give it as a "
                          f"--{name.replace('_', '-')} option (the same for every trial)")
    if value is None:
        return None
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or not {"low", "high"} <= set(value):
            raise ConfigError(f"{where}: a range is {{low: ..., high: ...}}, with log: true to sample in log scale")
        low, high = _number(where, value["low"]), _number(where, value["high"])
        if not low <= high:
            raise ConfigError(f"{where}: empty range, low {low:g} is above high {high:g}; swap them")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where}: log is true or false, not {log!r}")
        if log and low <= 0:
            raise ConfigError(f"{where}: log: true needs a range above 0 (got low {low:g})")
        entry = Range(low, high, log)
        _check(where, name, [low, high])
        return entry
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: empty choice; list at least one value, e.g. [16, 32]")
        _check(where, name, value)
        return Choice(tuple(value))
    _check(where, name, [value])
    return value


def _number(where: str, value) -> float:
    """A range's end: a number, or text that reads as one (YAML reads 1e-5, without a dot, as text)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a number")
    if isinstance(value, (int, float)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a number") from None
    return int(number) if number.is_integer() and "." not in str(value) and "e" not in str(value).lower() else number


def _check(where: str, name: str, values: list) -> None:
    """Each value is one TrainConfig takes for that field (its own checks say why not)."""
    for value in values:
        try:
            TrainConfig(**{name: value})
        except FinebertError as e:
            raise ConfigError(f"{where}: {e}") from None
        except TypeError:
            raise ConfigError(f"{where}: {value!r} is not a value of this setting") from None
        kind = type(getattr(TrainConfig(), name))
        if name == "epochs":
            kind = float
        if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{where}: {value!r} is not a number")
        if kind is int and not float(value).is_integer():
            raise ConfigError(f"{where}: {value!r}: this setting takes whole numbers")


def sample(trial, space: dict) -> dict:
    """One trial's settings, drawn by the study's sampler: {field: value} for every Range and Choice."""
    settings = {}
    for name, entry in space.items():
        if isinstance(entry, Choice):
            settings[name] = trial.suggest_categorical(name, list(entry.options))
        elif isinstance(entry, Range) and isinstance(entry.low, int) and isinstance(entry.high, int):
            settings[name] = trial.suggest_int(name, entry.low, entry.high, log=entry.log)
        elif isinstance(entry, Range):
            settings[name] = trial.suggest_float(name, entry.low, entry.high, log=entry.log)
    return settings


def searched(space: dict) -> dict:
    """The entries that vary (Range, Choice); the rest of a space read from a file are fixed values."""
    return {k: v for k, v in space.items() if isinstance(v, (Range, Choice))}


def fixed(space: dict) -> dict:
    return {k: v for k, v in space.items() if not isinstance(v, (Range, Choice))}


def describe(space: dict) -> dict[str, str]:
    """{field: "1e-05 to 0.0005 (log)"}: for the study's record and the summary."""
    return {k: v.describe() if isinstance(v, (Range, Choice)) else repr(v) for k, v in space.items()}
