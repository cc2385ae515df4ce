"""Server CPU: the processes the bench started, read from /proc, or a metrics scrape.

A gateway with workers is a tree of processes (the parent and its workers), so the CPU of
a server is the CPU of every process descending from the one the bench started. Each
process counts its own user and system time and that of the children it has reaped:
``/proc/PID/stat`` fields 14 to 17 (utime, stime, cutime, cstime, in clock ticks, counted
after the parenthesised command name, which may itself contain spaces). A worker that
ended and was reaped by its parent thus still counts, as ``gateway.bank_cpu`` counts the
bank's for its own page; without the reaped part a worker restarted during a run took
its CPU out of the reading after it, and the run's server CPU came out negative.

A process reaped outside the tree (the server itself, or a worker orphaned by it) still
takes its CPU away, and a process started during a run brings its start-up into it: the
figures then describe no steady server. So ``ServerProcesses`` notes every change of the
set of processes between two of its readings (of the whole tree or of the children: the
bench reads the children just before and after each run, the tree inside that), and a
reading after a change is None: the run whose CPU it ends or begins shows it unknown,
never a figure that went back, and the bench says DOUBT (``cli.bench``).

For a bank the bench did not start, the only honest source is the bank's own metrics:
``scrape`` reads a counter from its Prometheus page. A setpay bank serves the CPU of all
its processes as ``setpay_bank_cpu_seconds_total`` (``gateway.bank_cpu``); a server that
does not, but exports the standard ``process_cpu_seconds_total`` of one process, is read
from that instead. A counter below the reading before it (the bank restarted between them:
its processes' CPU began again at 0) is a change as above (``PageCpu``): that reading is
None, never a figure that went back.
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


def _below(tree: dict[int, list[int]], roots: Sequence[int]) -> list[int]:
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, ()))
    return found


def descendants(roots: Sequence[int]) -> list[int]:
    """``roots`` and every live process below them."""
    return _below(_children(), roots)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of one process and of the children it has reaped (0
    if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime is field 14 of the line, index 11 here;
    # stime, cutime and cstime follow it.
    return sum(int(ticks) for ticks in fields[11:15]) / CLOCK_TICKS


class ServerProcesses:
    """The processes of a server the bench started: the CPU of all of them
    (``server_cpu``, a ``ServerCpuProbe``) and of each child of the root (``child_cpu``, a
    ``ProcessCpuProbe``), read from /proc; and ``changes``, how many times the set of
    processes differed from the one the reading before saw (the module docstring). A
    reading after a change is None, and so is a total below the one read before it."""

    def __init__(self, roots: Sequence[int]) -> None:
        self._roots = list(roots)
        self._seen: frozenset[int] | None = None
        self._total: float | None = None
        self.changes = 0

    def _changed(self, pids: list[int]) -> bool:
        """Whether the set of processes ``pids`` differs from the last reading's (of either
        kind)."""
        now = frozenset(pids)
        changed = self._seen is not None and now != self._seen
        self._seen = now
        self.changes += changed
        return changed

    def server_cpu(self) -> float | None:
        """CPU seconds used so far by the roots and their descendants (None: see above)."""
        pids = _below(_children(), self._roots)
        changed = self._changed(pids)
        total = sum(process_cpu_seconds(pid) for pid in pids)
        went_back = self._total is not None and total < self._total
        self._total = total
        if went_back and not changed:
            self.changes += 1  # a change the process ids did not show (one used again)
        return None if changed or went_back else total

    def child_cpu(self) -> dict[int, float] | None:
        """CPU seconds of each live child of the roots, by pid (None after a change)."""
        tree = _children()
        if self._changed(_below(tree, self._roots)):
            return None
        return {pid: process_cpu_seconds(pid) for root in self._roots for pid in tree.get(root, ())}


def tree_cpu(roots: Sequence[int]) -> ServerCpuProbe:
    """A probe of the CPU seconds used so far by ``roots`` and their descendants (None
    after a change: ``ServerProcesses``)."""
    return ServerProcesses(roots).server_cpu


def children_cpu(root: int) -> ProcessCpuProbe:
    """A probe of the CPU seconds of each live child of ``root``, by pid (None after a
    change: ``ServerProcesses``)."""
    return ServerProcesses([root]).child_cpu


def no_process_probe() -> dict[int, float] | None:
    """Child processes unknown (a server the bench did not start)."""
    return None


def shares_between(
    before: dict[int, float] | None, after: dict[int, float] | None
) -> tuple[float, ...] | None:
    """Each child's part of the CPU the children used between two readings, in pid order;
    None without two readings, with fewer than two children, without CPU used, or when
    the children changed between the readings (one ended, or started: its part would be
    its start, the ended one's lost) or one's CPU went back: never a negative part."""
    if before is None or after is None or len(after) < 2 or set(before) != set(after):
        return None
    used = [after[pid] - before[pid] for pid in sorted(after)]
    total = sum(used)
    if min(used) < 0 or total <= 0:
        return None
    return tuple(u / total for u in used)


class PageCpu:
    """A server's CPU read from its Prometheus page (``server_cpu``, a ``ServerCpuProbe``:
    the first of ``metrics`` the page has, summed over its samples), and ``changes`` as
    ``ServerProcesses`` counts them: how many times the counter went back (or another of
    ``metrics`` was read) since the reading before, which is how a restart of the bank
    shows on its page. Such a reading is None: the run it ends shows its server CPU
    unknown, never negative, and the run after it starts from it."""

    def __init__(self, url: str, metrics: Sequence[str] = PAGE_CPU_METRICS) -> None:
        metrics_page.check_url(url)
        self._url = url
        self._metrics = tuple(metrics)
        self._last: tuple[str, float] | None = None  # the counter last read, and its value
        self.changes = 0

    def server_cpu(self) -> float | None:
        """The counter's value (None when the page cannot be read, has none of the
        metrics, or after a change: see above)."""
        text = metrics_page.fetch(self._url)
        if text is None:
            return None
        found = metrics_page.sums(text, frozenset(self._metrics))
        name = next((name for name in self._metrics if name in found), None)
        if name is None:
            return None
        last, self._last = self._last, (name, found[name])
        if last is not None and (last[0] != name or found[name] < last[1]):
            self.changes += 1
            return None
        return found[name]


#: A server's CPU the bench watches for changes (``changes``): its processes, or its page.
WatchedCpu = ServerProcesses | PageCpu


def scrape(url: str, metrics: Sequence[str] = PAGE_CPU_METRICS) -> ServerCpuProbe:
    """A probe of the CPU a server's Prometheus page at ``url`` shows (``PageCpu``)."""
    return PageCpu(url, metrics).server_cpu


def no_probe() -> float | None:
    """Server CPU unknown."""
    return None
