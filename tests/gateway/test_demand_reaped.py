"""A worker killed while its requests compute leaves its count on the demand board; the
supervisor clears it as it reaps the worker, so the ledger process's writer stops waiting
for requests that will never come (``gateway.demand``, ``gateway.child.withdraw_demand``)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.child import WatchedChild
from gateway.config import BankConfig
from gateway.demand import DemandBoard, SharedDemand, demand_path
from gateway.ledger import GroupCommitConfig, SqliteLedgerStore, SqliteStoreConfig
from gateway.supervisor_signals import SupervisorSignals
from gateway.worker import WorkerPlan
from gateway.workers import Supervisor

WAIT = 10.0
DEAD = 1  # the index of the worker that is killed
# Short: the probe below lingers once, on purpose, while the dead worker's count stands.
LINGER = 0.05


def _plan(tmp_path: Path) -> WorkerPlan:
    return WorkerPlan(
        config=BankConfig(base_dir=tmp_path),
        listen="127.0.0.1:0",
        ca_listen="127.0.0.1:0",
        metrics=False,
        supervisor_pid=os.getpid(),
        ledger_socket=str(tmp_path / "ledger.sock"),
    )


class SeenDemand(SharedDemand):
    """The ledger process's demand, noting each count its writer decided on."""

    def __init__(self, board: DemandBoard) -> None:
        super().__init__(board)
        self.seen: list[int] = []

    @property
    def wanting(self) -> int:
        count = super().wanting
        self.seen.append(count)
        return count


def _writer_decides(store: SqliteLedgerStore, demand: SeenDemand) -> list[int]:
    """Commit one lone operation; the demand the writer saw before it committed (a count
    above zero is a linger)."""
    demand.seen.clear()
    store.execute(lambda tx: tx.run("INSERT INTO probe VALUES (1)"))
    return list(demand.seen)


def _killed_while_computing(path: str, index: int, computing: int) -> int:
    """Fork a worker that publishes ``computing`` requests in slot ``index`` and is then
    SIGKILLed; its pid, dead but not reaped."""
    pid = os.fork()
    if pid == 0:  # the worker; never returns
        try:
            DemandBoard(path).publisher(index)(computing)
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:  # until it is a zombie, left for the supervisor
        seen = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if seen is not None:
            assert seen.si_code == os.CLD_KILLED
            return pid
        time.sleep(0.005)
    raise AssertionError("the forked worker did not die")


@contextmanager
def _supervisor(plan: WorkerPlan) -> Iterator[Supervisor]:
    signals = SupervisorSignals()
    supervisor = Supervisor(plan, 2, signals=signals, inherited=[])
    try:
        yield supervisor
    finally:
        supervisor._selector.close()
        signals.close()


def test_the_supervisor_clears_a_killed_worker_s_slot_as_it_reaps_it(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert plan.ledger_socket is not None
    path = demand_path(plan.ledger_socket)
    board = DemandBoard(path, create=True)
    demand = SeenDemand(DemandBoard(path))  # the ledger process's view
    config = SqliteStoreConfig(group_commit=GroupCommitConfig(linger_seconds=LINGER))
    store = SqliteLedgerStore(tmp_path / "ledger.db", config=config, cpu=demand)
    try:
        store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL)"))
        live = board.publisher(0)  # worker 0 lives on, one request computing
        live(1)
        with _supervisor(plan) as supervisor:
            pid = _killed_while_computing(path, DEAD, 2)
            now = time.monotonic()
            supervisor._workers[pid] = WatchedChild(DEAD, pid, None, now - 1.0, ready_at=now)
            assert board.total() == 3  # its two requests stand, dead
            live(0)
            assert _writer_decides(store, demand)[0] == 2  # and the writer lingers for them
            live(1)

            supervisor._reap()

            assert pid not in supervisor._workers  # reaped
            assert board.total() == 1  # its slot is clear; the live worker's is kept
            live(0)
            assert demand.wanting == 0
            assert _writer_decides(store, demand) == [0]  # it commits at once
    finally:
        store.close()
