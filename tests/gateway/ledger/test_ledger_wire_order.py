"""The ledger wire stays in step: every answer reaches the operation it belongs to.

An operation numbered out of turn, an answer numbered for another operation, of the
wrong kind, unreadable, or too late: each ends the connection, and the next operation
dials afresh, so no caller ever gets another request's answer.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import (
    Decline,
    Declined,
    Ledger,
    LedgerKeys,
    LedgerStore,
    RemoteLedgerStore,
    RrpidReused,
    StoreError,
    StoreUnavailable,
    Unanswered,
    idempotency,
    money,
    wire,
)
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    FakeClock,
    ServedSqliteStore,
)

# How long the worker waits for an answer in the test of a late one (30 s in the bank):
# short, so the test is quick, yet long for a local answer whatever the machine's load.
SHORT_ANSWER_TIMEOUT_SECONDS = 1.0

# -- the service's side: a raw worker that gets out of step


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedSqliteStore]:
    store = ServedSqliteStore(tmp_path / "ledger.db")
    ledger = Ledger(store, LedgerKeys.generate(), clock=FakeClock())
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_A, EXPIRY, 100_000, EUR)
    yield store
    store.close()


def _dial(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    return sock


def _stored(store: LedgerStore) -> bytes | None:
    return store.read(
        functools.partial(idempotency.stored_response, rrpid=b"rrpid-1", request_digest=b"digest-1")
    )


@pytest.mark.parametrize("kind", [wire.EXECUTE, wire.READ], ids=["execute", "read"])
@pytest.mark.parametrize("numbers", [(2,), (1, 1), (1, 3)], ids=["first-is-2", "repeat", "skip"])
def test_an_operation_out_of_turn_closes_the_connection(
    served: ServedSqliteStore, kind: int, numbers: tuple[int, ...]
) -> None:
    query = wire.dump_operation(
        functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    )
    with _dial(served.socket_path) as sock:
        for number in numbers[:-1]:  # in turn: answered
            wire.send_frame(sock, kind, number, query)
            assert wire.receive_answer(sock, number) == (wire.RESULT, wire.dump_value(None))
        wire.send_frame(sock, kind, numbers[-1], query)
        assert sock.recv(1) == b""  # closed: no answer, and nothing more read
    assert served.service.connections == 1  # only the store's own
    assert _stored(served) is None  # and the service still serves the others


def test_operations_in_turn_are_answered_under_their_own_numbers(
    served: ServedSqliteStore,
) -> None:
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
    answer = functools.partial(
        idempotency.store_answer,
        rrpid=b"rrpid-1",
        request_digest=b"digest-1",
        response=b"answer",
    )
    reused = functools.partial(
        idempotency.stored_response, rrpid=b"rrpid-1", request_digest=b"another"
    )
    exchanges: list[tuple[int, object, int, object]] = [
        (wire.EXECUTE, decide, wire.RESULT, Unanswered(declined, 1, 1)),
        (wire.EXECUTE, answer, wire.RESULT, b"answer"),
        (wire.READ, reused, wire.ERROR, RrpidReused),  # a rule refuses: the connection stays
        (wire.EXECUTE, answer, wire.RESULT, b"answer"),  # already answered: the same bytes
    ]
    with _dial(served.socket_path) as sock:
        for number, (kind, operation, reply, expected) in enumerate(exchanges, start=1):
            wire.send_frame(sock, kind, number, wire.dump_operation(operation))
            got, body = wire.receive_answer(sock, number)
            value = wire.load(body)
            assert got == reply, (number, value)
            if isinstance(expected, type):
                assert isinstance(value, expected)
            else:
                assert value == expected
    assert _stored(served) == b"answer"


def test_operation_numbers_wrap_round_and_never_use_0() -> None:
    assert wire.next_number(0) == 1
    assert wire.next_number(1) == 2
    assert wire.next_number(wire.MAX_NUMBER) == 1


# -- the worker's side: a service that gets out of step


class _ScriptedService:
    """A ledger service that answers each operation with the next frame of a script
    (kind, offset from the operation's number, payload), and counts its connections.
    With ``late``, it sends its first answer only once the worker has hung up."""

    def __init__(
        self, path: str, script: list[tuple[int, int, bytes]], *, late: bool = False
    ) -> None:
        self._script = list(script)
        self._late = late
        self.accepted = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(4)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._script:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            sock.settimeout(30)
            with sock:
                self._answer_until_closed(sock)

    def _answer_until_closed(self, sock: socket.socket) -> None:
        while self._script:
            try:
                _, number, _ = wire.receive_frame(sock)
            except (OSError, wire.WireError):
                return  # the worker dropped this connection
            kind, offset, payload = self._script.pop(0)
            if self._late:
                self._late = False
                assert sock.recv(1) == b""  # wait until the worker gives up and hangs up
            try:
                wire.send_frame(sock, kind, number + offset, payload)
            except OSError:
                return  # the worker is gone

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=30)


_FINE = (wire.RESULT, 0, wire.dump_value(b"fine"))


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        ((wire.RESULT, 1, wire.dump_value(b"another's")), StoreUnavailable),
        ((wire.RESULT, 0, b"not a pickle"), StoreUnavailable),
        ((wire.RESULT, 0, b"\x80\x05K\x00Q."), StoreUnavailable),  # a persistent id
        ((wire.READ, 0, wire.dump_value(b"fine")), StoreUnavailable),
        ((3, 0, wire.dump_value(b"fine")), StoreUnavailable),  # 3 to 5: no kind any more
        ((wire.ERROR, 0, wire.dump_value("no error")), StoreUnavailable),
        ((wire.ERROR, 0, wire.dump_value(StoreError("the database failed"))), StoreError),
    ],
    ids=[
        "wrong-number",
        "unreadable",
        "foreign-reference",
        "wrong-kind",
        "retired-kind",
        "error-that-is-not-one",
        "store-error",
    ],
)
def test_the_worker_dials_afresh_after_an_answer_out_of_step(
    tmp_path: Path, answer: tuple[int, int, bytes], raised: type[Exception]
) -> None:
    path = str(tmp_path / "ledger.sock")
    scripted = _ScriptedService(path, [answer, _FINE])
    store = RemoteLedgerStore(path)
    query = functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    try:
        with pytest.raises(raised):
            store.read(query)
        assert store.read(query) == b"fine"
        assert scripted.accepted == 2  # the second operation came on a new connection
    finally:
        store.close()
        scripted.close()


def test_an_answer_too_late_is_never_read_as_the_next_operations(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sock")
    scripted = _ScriptedService(
        path, [(wire.RESULT, 0, wire.dump_value(b"late")), _FINE], late=True
    )
    store = RemoteLedgerStore(path, timeout_seconds=SHORT_ANSWER_TIMEOUT_SECONDS)
    query = functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    try:
        with pytest.raises(StoreUnavailable, match="timed out"):
            store.read(query)
        # The worker hung up on the late answer: the next operation gets its own.
        assert store.read(query) == b"fine"
        assert scripted.accepted == 2
    finally:
        store.close()
        scripted.close()


def test_a_rule_that_refuses_keeps_the_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sock")
    refusal = (wire.ERROR, 0, wire.dump_value(RrpidReused("another request's RRPID")))
    scripted = _ScriptedService(path, [refusal, _FINE])
    store = RemoteLedgerStore(path)
    query = functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    try:
        with pytest.raises(RrpidReused):
            store.read(query)
        assert store.read(query) == b"fine"
        assert scripted.accepted == 1
    finally:
        store.close()
        scripted.close()
