"""A progress bar on stderr for the untimed preparation (never on stdout: that is the report).

On a terminal the bar redraws in place; otherwise (a log, CI) it prints a line at every
tenth, so a long preparation still shows it is moving. It draws on any stream that writes,
flushes and says whether it is a terminal (``Out``): the command gives one that a reader
gone from standard error does not break (``cli.stdout_reader.Stderr``).
"""

from __future__ import annotations

import sys
import time
from typing import Protocol

# Redraws per second at most: more only costs the preparation CPU.
REDRAWS_PER_SECOND = 10
BAR_WIDTH = 30
# Lines printed when the output is not a terminal: one per tenth.
LOG_STEPS = 10


class Out(Protocol):
    """Where a bar is drawn: a text stream, standard error by default."""

    def write(self, text: str, /) -> int:
        """Write ``text``."""
        ...

    def flush(self) -> None:
        """Flush what was written."""
        ...

    def isatty(self) -> bool:
        """Whether it is a terminal."""
        ...


class ProgressBar:
    """``label [#####     ] done/total`` for one piece of work."""

    def __init__(self, label: str, total: int, out: Out | None = None) -> None:
        self._label = label
        self._total = max(total, 1)
        self._done = 0
        self._out: Out = out or sys.stderr
        self._tty = self._out.isatty()
        self._last = 0.0
        self._logged = 0
        self._started = time.monotonic()

    def __call__(self, step: int) -> None:
        """Count ``step`` more items done."""
        self._done += step
        if self._tty:
            now = time.monotonic()
            if now - self._last >= 1.0 / REDRAWS_PER_SECOND or self._done >= self._total:
                self._last = now
                self._draw("\r")
        else:
            tenth = self._done * LOG_STEPS // self._total
            if tenth > self._logged:
                self._logged = tenth
                self._draw("")
                self._out.write("\n")
        self._out.flush()

    def _draw(self, prefix: str) -> None:
        filled = BAR_WIDTH * min(self._done, self._total) // self._total
        bar = "#" * filled + " " * (BAR_WIDTH - filled)
        self._out.write(f"{prefix}{self._label} [{bar}] {self._done}/{self._total}")

    def close(self) -> None:
        """End the bar's line (with the time it took)."""
        if self._tty:
            self._draw("\r")
        else:
            self._draw("")
        self._out.write(f" ({time.monotonic() - self._started:.1f} s)\n")
        self._out.flush()
