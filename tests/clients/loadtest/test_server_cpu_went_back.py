"""A server's CPU total that went back while its processes stayed the same is no figure
and counts as a change (``cpu.ServerProcesses.server_cpu``): a process id used again by a
new process (the old one's CPU gone with it) shows so, and nothing else does.

The /proc readings are stood in for: the same process tree each time, with the totals
given."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clients.loadtest import cpu

ROOT, WORKER = 100, 101


def _readings(patch: pytest.MonkeyPatch, *totals: float) -> cpu.ServerProcesses:
    """A server of the same two processes at every reading, its CPU seconds ``totals``,
    one a reading (the root's; the worker's is 0)."""
    given: Iterator[float] = iter(totals)
    patch.setattr(cpu, "_children", lambda: {ROOT: [WORKER]})
    patch.setattr(cpu, "process_cpu_seconds", lambda pid: next(given) if pid == ROOT else 0.0)
    return cpu.ServerProcesses([ROOT])


def test_a_total_that_went_back_is_no_figure_and_a_change(monkeypatch: pytest.MonkeyPatch) -> None:
    processes = _readings(monkeypatch, 5.0, 3.0, 4.0)
    assert processes.server_cpu() == 5.0
    assert processes.server_cpu() is None  # went back: the run it ends has its CPU unknown
    assert processes.changes == 1
    assert processes.server_cpu() == 4.0  # the next run starts from it
    assert processes.changes == 1


def test_a_total_that_grew_or_held_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    processes = _readings(monkeypatch, 5.0, 5.0, 6.5)
    assert [processes.server_cpu() for _ in range(3)] == [5.0, 5.0, 6.5]
    assert processes.changes == 0
