"""Which worker of a spawned server accepted each of the bench's connections, and the
bench dialling again while a worker has none.

The first tests run a real process tree: a parent whose two children listen on one port
with SO_REUSEPORT and accept whatever comes (the workers) and a third child that does
not listen (a ledger process), then connect plain sockets from this process. The last
run the load against the real echo service with two workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from clients.loadtest import load
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.cpu import tree_cpu
from clients.loadtest.load import MAX_REDIALS, ClosedLoop
from clients.loadtest.spread import WorkerSpread
from clients.loadtest.tally import echo_judge, tally

from .conftest import echo_request, serve_echo

# The parent binds the port (without listening) so the children can share it, forks two
# listening workers and one child that only sleeps, then lets its own socket go.
TREE = r"""
import os, socket, sys, time

def reusable():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return s

def serve(server):
    accepted = []
    while True:
        accepted.append(server.accept()[0])

holder = reusable()
holder.bind(("127.0.0.1", 0))
port = holder.getsockname()[1]
listeners = int(sys.argv[1])
if listeners == 0:  # one process, its own worker
    holder.listen(64)
    print(port, flush=True)
    serve(holder)
ready_r, ready_w = os.pipe()
for child in range(listeners + 1):
    if os.fork() == 0:
        holder.close()
        if child == listeners:
            time.sleep(3600)  # not a worker: holds no socket on the port
        server = reusable()
        server.bind(("127.0.0.1", port))
        server.listen(64)
        os.write(ready_w, b"L")
        serve(server)
got = b""
while len(got) < listeners:
    got += os.read(ready_r, listeners)
holder.close()
print(port, flush=True)
time.sleep(3600)
"""
WAIT_SECONDS = 10.0


@dataclass
class Tree:
    pid: int
    port: int


def _start(listeners: int) -> Iterator[Tree]:
    process = subprocess.Popen(
        [sys.executable, "-c", TREE, str(listeners)], stdout=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        yield Tree(process.pid, int(process.stdout.readline()))
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def two_workers() -> Iterator[Tree]:
    yield from _start(2)


@pytest.fixture
def one_process() -> Iterator[Tree]:
    yield from _start(0)


def _settled(spread: WorkerSpread, ports: frozenset[int]) -> tuple[int, ...] | None:
    """``reached`` once every connection from ``ports`` is accepted (or the wait is over)."""
    give_up = time.monotonic() + WAIT_SECONDS
    while True:
        reached = spread.reached(ports)
        if (reached is not None and sum(reached) == len(ports)) or time.monotonic() > give_up:
            return reached
        time.sleep(0.02)


def test_each_worker_s_connections_are_counted(two_workers: Tree) -> None:
    spread = WorkerSpread(two_workers.pid, two_workers.port)
    before = spread.client_ports()
    sockets = [socket.create_connection(("127.0.0.1", two_workers.port)) for _ in range(6)]
    try:
        mine = spread.client_ports() - before
        assert mine == {s.getsockname()[1] for s in sockets}
        reached = _settled(spread, mine)
        # Two workers (the sleeping child listens on nothing), all six connections.
        assert reached is not None and len(reached) == 2 and sum(reached) == 6
        # Only the connections named count: another client's are not the bench's.
        assert sum(spread.reached(frozenset(sorted(mine)[:2])) or ()) == 2
    finally:
        for s in sockets:
            s.close()


def test_a_server_without_workers_is_its_own_worker(one_process: Tree) -> None:
    spread = WorkerSpread(one_process.pid, one_process.port)
    before = spread.client_ports()
    sockets = [socket.create_connection(("127.0.0.1", one_process.port)) for _ in range(3)]
    try:
        assert _settled(spread, spread.client_ports() - before) == (3,)
    finally:
        for s in sockets:
            s.close()


def test_a_process_that_listens_on_another_port_has_no_workers(two_workers: Tree) -> None:
    assert WorkerSpread(two_workers.pid, two_workers.port + 1).reached(frozenset()) is None
    assert WorkerSpread(os.getpid(), two_workers.port).reached(frozenset()) is None


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayAccess, int, int]]:
    work = tmp_path_factory.mktemp("echo")
    for server in serve_echo(work, 2):
        access = GatewayAccess.from_tls_dir(server.target, work / "bank" / "tls")
        yield access, server.process.pid, server.port


def _run(access: GatewayAccess, spread: WorkerSpread, channels: int) -> load.Recording:
    return load.run(
        ClosedLoop(4, 5.0, limit=40), access, [echo_request()], channels=channels, timeout=10.0,
        reuse=True, server_cpu=tree_cpu([]), spread=spread,
    )  # fmt: skip


def test_the_bench_s_connections_reach_every_worker(echo: tuple[GatewayAccess, int, int]) -> None:
    access, pid, port = echo
    recording = _run(access, WorkerSpread(pid, port), channels=8)
    # Eight connections, each accepted by one of the two workers, neither left without
    # (a dial misses one 1 time in 128; four in a row, about once in 2.7e8).
    assert recording.connections is not None and sum(recording.connections) == 8
    assert len(recording.connections) == 2 and min(recording.connections) > 0
    counted = tally("echo", recording, echo_judge)
    assert counted.connections == recording.connections and counted.outcomes == {"echoed": 40}


@dataclass(frozen=True)
class Scripted(WorkerSpread):
    """A test double: the real server's ports, and a scripted answer per dial."""

    answers: list[tuple[int, ...]] = field(default_factory=list)
    dials: list[frozenset[int]] = field(default_factory=list)

    def reached(self, client_ports: frozenset[int]) -> tuple[int, ...] | None:
        self.dials.append(client_ports)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_the_bench_dials_again_while_a_worker_has_none(
    echo: tuple[GatewayAccess, int, int],
) -> None:
    access, pid, port = echo
    spread = Scripted(pid, port, answers=[(4, 0), (4, 0), (2, 2)])
    recording = _run(access, spread, channels=4)
    assert recording.redials == 2 and recording.connections == (2, 2)
    # Each dial was new connections: three sets of four ports, none shared.
    assert [len(d) for d in spread.dials] == [4, 4, 4]
    assert not (spread.dials[0] & spread.dials[1]) and not (spread.dials[1] & spread.dials[2])
    assert tally("echo", recording, echo_judge).outcomes == {"echoed": 40}


def test_the_bench_gives_up_dialling_and_says_so(echo: tuple[GatewayAccess, int, int]) -> None:
    access, pid, port = echo
    recording = _run(access, Scripted(pid, port, answers=[(4, 0)]), channels=4)
    assert recording.redials == MAX_REDIALS and recording.connections == (4, 0)


def test_fewer_channels_than_workers_are_not_dialled_again(
    echo: tuple[GatewayAccess, int, int],
) -> None:
    access, pid, port = echo
    recording = _run(access, Scripted(pid, port, answers=[(1, 0)]), channels=1)
    assert recording.redials == 0 and recording.connections == (1, 0)
