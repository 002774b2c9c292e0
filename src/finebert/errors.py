"""Every error finebert raises for bad input, in one tree.

    FinebertError            base class; the CLI prints its message on one line and exits with code 2
    ├── DataError            a data file: missing, unreadable, wrong columns, empty cells, one class only
    ├── ConfigError          a setting: out of range or of the wrong kind
    ├── ModelError           a model or backbone folder: missing, or not one finebert can load
    ├── MissingExtraError    an optional dependency is not installed (names the pip command)
    ├── DistillationRefused  a distilled student scored more than --max-loss points under its teacher (nothing written)
    └── Interrupted          Ctrl-C during training: a checkpoint was saved (exit code 130; --resume continues)

Each message says what is wrong and how to fix it, e.g.
``data.csv: no column 'review'; columns found: text, label. Pass --text-column with one of them.``
Anything else that escapes is a bug in finebert, not in the user's input.
"""


def first_line(e: BaseException) -> str:
    """The first line of another library's error (or its class name if it says nothing), to quote in ours."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class FinebertError(Exception):
    """Base class of finebert's errors for bad input."""

    exit_code = 2


class DataError(FinebertError):
    """A data file cannot be used as it is."""


class ConfigError(FinebertError):
    """A setting is out of range or of the wrong kind."""


class ModelError(FinebertError):
    """A model or backbone folder is missing or not one finebert can load."""


class MissingExtraError(FinebertError):
    """An optional dependency is missing."""

    def __init__(self, package: str, extra: str):
        super().__init__(f"{package} is not installed; install it with: pip install 'finebert[{extra}]'")


class DistillationRefused(FinebertError):
    """A student lost more than --max-loss points of the validation metric against its teacher."""


class Interrupted(FinebertError):
    """Training stopped by Ctrl-C after saving a checkpoint."""

    exit_code = 130
