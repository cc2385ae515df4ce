"""Server CPU: the processes the bench started, read from /proc, or a metrics scrape.

A gateway with workers is a tree of processes (the parent and its workers), so the CPU of
a server is the CPU of every live process descending from the one the bench started.
``/proc/PID/stat`` gives user and system time in clock ticks (fields 14 and 15, counted
after the parenthesised command name, which may itself contain spaces).

For a bank the bench did not start, the only honest source is the bank's own metrics:
``scrape`` reads a counter from its Prometheus page. A setpay bank serves the CPU of all
its processes as ``setpay_bank_cpu_seconds_total`` (``gateway.bank_cpu``); a server that
does not, but exports the standard ``process_cpu_seconds_total`` of one process, is read
from that instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from clients.loadtest import metrics_page

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# What a metrics page calls its server's CPU seconds, in order of preference.
PAGE_CPU_METRICS = ("setpay_bank_cpu_seconds_total", "process_cpu_seconds_total")

ServerCpuProbe = Callable[[], float | None]
"""Cumulative CPU seconds of a server (None when it cannot be observed)."""

ProcessCpuProbe = Callable[[], dict[int, float] | None]
"""Cumulative CPU seconds of each child process of a server: its workers (and its ledger
process, if it has one). None when they cannot be observed."""


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


def children_of(root: int) -> list[int]:
    """The live child processes of ``root``."""
    return _children().get(root, [])


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


def children_cpu(root: int) -> ProcessCpuProbe:
    """A probe of the CPU seconds of each live child of ``root``, by pid."""

    def probe() -> dict[int, float] | None:
        return {pid: process_cpu_seconds(pid) for pid in children_of(root)}

    return probe


def no_process_probe() -> dict[int, float] | None:
    """Child processes unknown (a server the bench did not start)."""
    return None


def shares_between(
    before: dict[int, float] | None, after: dict[int, float] | None
) -> tuple[float, ...] | None:
    """Each child's part of the CPU the children used between two readings, in pid order
    (a child started meanwhile counts from zero); None without two readings, with fewer
    than two children, or without CPU used."""
    if before is None or after is None or len(after) < 2:
        return None
    used = [max(0.0, after[pid] - before.get(pid, 0.0)) for pid in sorted(after)]
    total = sum(used)
    return tuple(u / total for u in used) if total > 0 else None


def scrape(url: str, metrics: Sequence[str] = PAGE_CPU_METRICS) -> ServerCpuProbe:
    """A probe of the first of ``metrics`` the Prometheus page at ``url`` has, summed over
    its samples (None when the page cannot be read or has none of them)."""
    metrics_page.check_url(url)

    def probe() -> float | None:
        text = metrics_page.fetch(url)
        if text is None:
            return None
        found = metrics_page.sums(text, frozenset(metrics))
        return next((found[name] for name in metrics if name in found), None)

    return probe


def no_probe() -> float | None:
    """Server CPU unknown."""
    return None
