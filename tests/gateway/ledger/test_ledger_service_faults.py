"""The ledger service under faults: a worker stalled mid-frame, a ledger process killed.

A worker that stops in the middle of a frame must hold up no other worker. A ledger
process killed (SIGKILL) at any point of a group leaves each waiting worker a prompt
StoreUnavailable, never an answer for what was not committed; the operation is not sent
again behind the worker's back, and a retry of the same request (same RRPID) is answered
as what was kept: the stored answer if the decision was committed, a new decision if not.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import shutil
import signal
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger import (
    Decline,
    Declined,
    Ledger,
    LedgerKeys,
    Outcome,
    PrebuiltApproval,
    RemoteLedgerStore,
    SqliteLedgerStore,
    StoreUnavailable,
    Unanswered,
    idempotency,
    money,
    new_hold_id,
    service,
    wire,
)
from gateway.ledger.service import LedgerService
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    FakeClock,
    ServedSqliteStore,
)

# The service's patience with a worker, shortened for the stalled-worker test: a service
# that waited for the rest of a frame would give up on the stalled worker this soon.
SHORT_PEER_TIMEOUT_SECONDS = 2.0
AMOUNT = 1000
# How often (every 10 ms) to look whether the service has dropped a connection that hung
# up: 30 s in all, far beyond what a loaded machine needs.
DROP_POLLS = 3000


def _frame(kind: int, number: int, payload: bytes) -> bytes:
    return struct.pack(">IBI", len(payload), kind, number) + payload


def _nothing_stored(store: RemoteLedgerStore) -> bool:
    query = functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    return store.read(query) is None


@pytest.mark.parametrize("cut", [4, 9, 20], ids=["in-the-header", "after-it", "in-the-payload"])
def test_a_worker_stalled_mid_frame_holds_up_no_other(
    served: ServedSqliteStore, monkeypatch: pytest.MonkeyPatch, cut: int
) -> None:
    monkeypatch.setattr(service, "PEER_TIMEOUT_SECONDS", SHORT_PEER_TIMEOUT_SECONDS)
    query = wire.dump_operation(
        functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    )
    frame = _frame(wire.READ, 1, query)
    assert cut < len(frame)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
        stalled.settimeout(30)
        stalled.connect(served.socket_path)
        stalled.sendall(frame[:cut])
        # The other worker's operations are answered while the frame is incomplete...
        for _ in range(3):
            assert _nothing_stored(served)
        assert served.service.connections == 2
        # ... and the stalled worker's own, once the rest of it comes.
        stalled.sendall(frame[cut:])
        assert wire.receive_answer(stalled, 1) == (wire.RESULT, wire.dump_value(None))
        stalled.sendall(_frame(wire.READ, 2, query))
        assert wire.receive_answer(stalled, 2) == (wire.RESULT, wire.dump_value(None))


def test_a_worker_that_hangs_up_mid_frame_is_dropped(served: ServedSqliteStore) -> None:
    query = wire.dump_operation(
        functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
        gone.connect(served.socket_path)
        gone.sendall(_frame(wire.EXECUTE, 1, query)[:20])
    assert _nothing_stored(served)  # the others are served
    waited = threading.Event()
    for _ in range(DROP_POLLS):  # the service sees the hang-up on its loop, in its time
        if served.service.connections == 1:
            break
        waited.wait(0.01)
    assert served.service.connections == 1  # only the store's own


def test_a_fault_on_one_connection_closes_it_and_the_loop_serves_on(
    served: ServedSqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault the loop does not expect (here injected where it checks an operation's
    # number; for real, the kernel short of memory or a bug) must not stop the loop.
    next_number = wire.next_number
    faults = [MemoryError()]

    def faulty(number: int) -> int:
        if threading.current_thread().name == "ledger-loop" and faults:
            raise faults.pop()
        return next_number(number)

    monkeypatch.setattr(wire, "next_number", faulty)
    query = wire.dump_operation(
        functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unlucky:
        unlucky.settimeout(30)
        unlucky.connect(served.socket_path)
        unlucky.sendall(_frame(wire.READ, 1, query))
        assert unlucky.recv(1) == b""  # closed, not answered
    assert faults == []
    assert _nothing_stored(served)  # every other connection is served
    assert served.service.connections == 1


def test_a_worker_that_hangs_up_before_its_answer_leaves_it_decided_once(
    tmp_path: Path,
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ledger-"))  # short: a socket path
    path = str(directory / "ledger.sock")
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    served = LedgerService(store, path)
    remote = RemoteLedgerStore(path)
    try:
        # The writer is held, so the operation is queued when its worker hangs up.
        entered, release = threading.Event(), threading.Event()

        def hold_writer(tx: Transaction) -> None:
            entered.set()
            release.wait()

        store.submit(hold_writer, lambda result, error: None)
        entered.wait()
        declined = Declined(Decline.HOLD_EXPIRED)
        decide = functools.partial(
            idempotency.decide_once,
            rrpid=b"rrpid-1",
            request_digest=b"digest-1",
            now_ms=1,
            checked_at_ms=None,
            decide=functools.partial(money.decided_by_caller, outcome=declined),
            prebuilt=None,
        )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
            gone.connect(path)
            gone.sendall(_frame(wire.EXECUTE, 1, wire.dump_operation(decide)))
        while store._writer._queue.qsize() < 1:
            threading.Event().wait(0.001)
        release.set()
        # Decided and committed once; asked again, the decision is found, not remade.
        lookup = functools.partial(idempotency.lookup, rrpid=b"rrpid-1", request_digest=b"digest-1")
        assert remote.execute(lookup) == Unanswered(declined, 1, 1)
        assert remote.execute(decide) == Unanswered(declined, 1, 1)
        # Its answer found nobody: the connection is gone, and the service serves on.
        assert served.connections == 1
    finally:
        remote.close()
        served.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_an_answer_over_the_frame_limit_is_refused_by_the_worker(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def answer_too_much() -> None:
        sock, _ = listener.accept()
        with sock:
            _, number, _ = wire.receive_frame(sock)
            sock.sendall(struct.pack(">IBI", wire.MAX_FRAME_BYTES + 1, wire.RESULT, number))
            sock.recv(1)  # until the worker hangs up

    fake = threading.Thread(target=answer_too_much, daemon=True)
    fake.start()
    remote = RemoteLedgerStore(path)
    try:
        query = functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
        with pytest.raises(StoreUnavailable, match="over the limit"):
            remote.read(query)
    finally:
        remote.close()
        fake.join()
        listener.close()


# -- a ledger process killed at a point of a group


def _hang() -> None:
    threading.Event().wait()


def _serve_until_killed(db: str, path: str, kill_point: str, control: Connection) -> None:
    """A ledger process: serve ``db`` on ``path``; at ``kill_point`` tell the test and
    hang there until it kills this process."""
    store = SqliteLedgerStore(db)
    if kill_point == "in-group":
        submit = store.submit

        def hang_in_the_group(work: Callable[[Transaction], Any], on_done: Any) -> None:
            def applied_then_hang(tx: Transaction) -> Any:
                result = work(tx)  # applied, inside the group's open transaction
                control.send(kill_point)
                _hang()
                return result

            submit(applied_then_hang, on_done)

        store.submit = hang_in_the_group  # type: ignore[method-assign]
    elif kill_point == "after-commit":

        def hang_before_answering(self: LedgerService, *args: object) -> None:
            control.send(kill_point)  # on the writer, once the group is committed
            _hang()

        LedgerService._answer = hang_before_answering  # type: ignore[method-assign, assignment]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by the process killed before this one
    served = LedgerService(store, path)
    control.send("serving")
    control.recv()  # told to stop
    served.close()


class _LedgerProcess:
    """A ledger service in a child process of this test."""

    def __init__(self, db: Path, path: str, kill_point: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.control, child_end = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_serve_until_killed, args=(str(db), path, kill_point, child_end)
        )
        self.process.start()
        child_end.close()
        assert self.control.recv() == "serving"

    def kill(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join()

    def stop(self) -> None:
        self.control.send("stop")
        self.process.join()
        assert self.process.exitcode == 0


def _authorize(ledger: Ledger, hold_id: str, answer: bytes) -> bytes:
    """The same authorization request each time, with its approval built ahead."""

    def never(outcome: Outcome) -> bytes:
        raise AssertionError(f"asked to answer {outcome}: the approval was built ahead")

    return ledger.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=AMOUNT,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"xid-1",
        pi_digest=b"pi-1",
        rrpid=b"rrpid-1",
        request_digest=b"digest-1",
        respond=never,
        hold_id=hold_id,
        prebuilt=PrebuiltApproval(hold_id, AMOUNT, EUR, answer),
    )


@pytest.mark.parametrize("kill_point", ["in-group", "after-commit"])
def test_a_ledger_process_killed_in_a_group_answers_nothing_it_did_not_keep(
    tmp_path: Path, kill_point: str
) -> None:
    db = tmp_path / "ledger.db"
    keys = LedgerKeys.generate()
    opening = Ledger(SqliteLedgerStore(db), keys, clock=FakeClock())
    opening.open_merchant_account(MERCHANT, EUR)
    opening.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
    opening.close()
    directory = Path(tempfile.mkdtemp(prefix="ledger-"))  # short: a socket path
    path = str(directory / "ledger.sock")
    processes: list[_LedgerProcess] = []
    try:
        processes.append(_LedgerProcess(db, path, kill_point))
        ledger = Ledger(RemoteLedgerStore(path), keys, clock=FakeClock())
        hold_id = new_hold_id()
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(_authorize, ledger, hold_id, b"first answer")
            assert processes[0].control.recv() == kill_point
            processes[0].kill()
            # At once, and not an answer: the connection closed under the waiting worker.
            with pytest.raises(StoreUnavailable, match="closed"):
                waiting.result()
        processes.append(_LedgerProcess(db, path, "none"))
        retried = _authorize(ledger, hold_id, b"second answer")
        if kill_point == "in-group":
            assert retried == b"second answer"  # nothing was kept: decided now, once
        else:
            assert retried == b"first answer"  # kept: its stored answer, not a new decision
        assert ledger.hold(hold_id).amount == AMOUNT
        assert ledger.find_card_account(PAN_A).pending == AMOUNT  # held once
        ledger.check_balanced()
        ledger.close()
        processes[1].stop()
    finally:
        for process in processes:
            process.kill()
        shutil.rmtree(directory, ignore_errors=True)
