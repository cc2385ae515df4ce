"""The servers the bench starts are inspectable: no core file, but left dumpable
(``SETPAY_ALLOW_INSPECTION=1``), so that the bench, as any non-root user, may read their
workers' ``/proc/PID/fd`` to see how its connections spread. The real echo service with
two workers; what an unprivileged process may then read is ``tests/cli``'s to show."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.hardening import ALLOW_INSPECTION
from clients.loadtest import spawn
from tests.cli.dump_probe import core_limit_line

from .conftest import serve_echo

NO_CORE = "Max core file size 0 0 bytes"
WORKERS = 2


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[spawn.Server]:
    yield from serve_echo(tmp_path, WORKERS)


def test_the_name_is_the_one_setpay_reads() -> None:
    assert spawn.ALLOW_INSPECTION == ALLOW_INSPECTION


def test_a_spawned_server_and_its_workers_are_inspectable_and_dump_no_core(
    echo: spawn.Server,
) -> None:
    pids = echo.pids()
    assert len(pids) == 1 + WORKERS, pids
    for pid in pids:
        assert core_limit_line(pid) == NO_CORE, pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"{ALLOW_INSPECTION}=1".encode() in environ, pid
    # The server's word that it understood the variable and left itself dumpable.
    log = echo.log.read_text(errors="replace")
    assert log.count(f"{ALLOW_INSPECTION}=1: ") == 1, log
