"""The CPU the bank has used: its supervisor, its workers and its ledger process.

A load generator on another machine can only learn the bank's CPU from the bank, and the
merged page of prometheus_client's multiprocess mode has no ``process_cpu_seconds_total``
(each process's own collector is left out of the merge). So the supervisor, which serves
that page, reports ``setpay_bank_cpu_seconds_total``:

- its own user and system time and that of every child it has reaped (``os.times``: a
  worker that died and was replaced still counts);
- plus the user and system time of each child still running, from ``/proc/PID/stat``.

The supervisor reaps its children and answers scrapes in the same single thread, so no
child is counted twice or missed between the two parts, and the sum never goes back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

NAME = "setpay_bank_cpu_seconds"  # exposed with the counter's ``_total`` suffix
HELP = "CPU seconds used by the bank's processes (supervisor, workers, ledger process)"
PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Children = Callable[[], Iterable[int]]
"""The process ids of the supervisor's children running now."""


def running_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a running process (0 once it is gone)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name (in parentheses, and it may hold anything): utime and
    # stime are the 14th and 15th fields of the line, indexes 11 and 12 here.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def bank_cpu_seconds(children: Children) -> float:
    """The supervisor's CPU, its reaped children's and its running children's."""
    own = os.times()
    total = own.user + own.system + own.children_user + own.children_system
    return total + sum(running_cpu_seconds(pid) for pid in children())


class BankCpuCollector:
    """A Prometheus collector of ``setpay_bank_cpu_seconds_total``."""

    def __init__(self, children: Children) -> None:
        self._children = children

    def collect(self) -> Iterator[Any]:
        """The one sample, read now."""
        # Imported here like everything of prometheus_client (see gateway.metrics).
        from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415

        yield CounterMetricFamily(NAME, HELP, value=bank_cpu_seconds(self._children))
