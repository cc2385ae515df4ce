"""Server CPU: the processes the bench started, read from /proc, or a metrics scrape.

A gateway with workers is a tree of processes (the parent and its workers), so the CPU of
a server is the CPU of every live process descending from the one the bench started.
``/proc/PID/stat`` gives user and system time in clock ticks (fields 14 and 15, counted
after the parenthesised command name, which may itself contain spaces).

For a bank the bench did not start, the only honest source is the bank's own metrics:
``scrape`` sums a counter (``process_cpu_seconds_total`` by default) from a Prometheus
text endpoint.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A metrics page is small; a scrape that takes longer than this is not worth waiting for.
SCRAPE_SECONDS = 5.0
# Largest metrics page read (bytes): a multi-worker page is a few hundred kilobytes.
MAX_SCRAPE_BYTES = 8 << 20

ServerCpuProbe = Callable[[], float | None]
"""Cumulative CPU seconds of a server (None when it cannot be observed)."""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None  # the process ended between listing and reading
    # Fields after the command name, which is in parentheses and may hold anything.
    return text[text.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(roots: Sequence[int]) -> list[int]:
    """``roots`` and every live process below them."""
    tree = _children()
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, ()))
    return found


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of one process (0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime is field 14 of the line, index 11 here.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu(roots: Sequence[int]) -> Callable[[], float | None]:
    """A probe of the CPU seconds used so far by ``roots`` and their descendants."""

    def probe() -> float | None:
        return sum(process_cpu_seconds(pid) for pid in descendants(roots))

    return probe


def scrape(url: str, metric: str = "process_cpu_seconds_total") -> Callable[[], float | None]:
    """A probe summing every sample of ``metric`` on a Prometheus text page (None on failure)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("a metrics URL must be http:// or https://")

    def probe() -> float | None:
        try:
            with urllib.request.urlopen(url, timeout=SCRAPE_SECONDS) as page:  # noqa: S310
                text = page.read(MAX_SCRAPE_BYTES).decode("utf-8", "replace")
        except OSError:
            return None
        total, seen = 0.0, False
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name == metric:
                total += float(line.rsplit(" ", 1)[-1])
                seen = True
        return total if seen else None

    return probe


def no_probe() -> float | None:
    """Server CPU unknown."""
    return None
