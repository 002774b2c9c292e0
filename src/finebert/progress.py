"""Progress bars: tqdm's redrawn bar on a terminal; in a log (a pipe, a file, CI), one line per tenth of the work.

    bar = progress_bar(total=1000, desc="training", unit="ex")
    bar.update(32); bar.set_postfix(loss="0.41"); bar.write("epoch 1: ...")
    bar.close()

tqdm writing to a file rewrites its line with a carriage return at every update: a piped `finebert train` left
one such line per batch, thousands in a CI log. LogProgress writes a line when the work crosses 10%, 20%, ...
and when it ends, with the same figures (count, rate, elapsed, the postfix).
"""

from __future__ import annotations

import sys
import time


def progress_bar(*, total: int | None, desc: str, unit: str, initial: int = 0, disable: bool = False, **tqdm_options):
    """A tqdm bar on a terminal (stderr), a LogProgress elsewhere; both quiet when `disable`."""
    if disable or sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, **tqdm_options)
    return LogProgress(total=total, desc=desc, unit=unit, initial=initial)


class LogProgress:
    """tqdm's interface as the commands use it (update, set_postfix, write, close), as lines for a log: progress
    to `file` (standard error), messages to standard output, where tqdm.write puts them."""

    def __init__(self, *, total: int | None, desc: str, unit: str, initial: int = 0, file=None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.file = file or sys.stderr
        self.postfix = ""
        self.started = time.monotonic()
        self.shown = self._tenth()  # the last tenth a line was written for
        self.closed = False

    def _tenth(self) -> int:
        return int(10 * self.n / self.total) if self.total else 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self._tenth() > self.shown:
            self.shown = self._tenth()
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, text: str) -> None:
        """A message between progress lines: to standard output, as tqdm.write sends it."""
        print(text, file=sys.stdout, flush=True)

    def close(self) -> None:
        if not self.closed and (not self.total or self.n < self.total or self.shown < 10):
            self._line()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        done = f"{100 * self.n / self.total:3.0f}% {self.n}/{self.total}" if self.total else f"{self.n}"
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit} [{elapsed:.0f}s{rate}{postfix}]", file=self.file, flush=True)
