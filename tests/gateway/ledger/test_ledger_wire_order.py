"""The ledger wire stays in step: every answer reaches the operation it belongs to.

A worker's callback that outlives the service's patience, a frame numbered for another
operation, an answer the worker cannot read: each ends the connection, and the next
operation dials afresh, so no caller ever gets another request's answer.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger import (
    Ledger,
    LedgerKeys,
    LedgerStore,
    Outcome,
    PrebuiltApproval,
    RemoteLedgerStore,
    RrpidReused,
    StoreError,
    StoreUnavailable,
    idempotency,
    new_hold_id,
    service,
    wire,
)
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    FakeClock,
    ServedSqliteStore,
)

# The service's patience with a callback in these tests (30 s in the bank): short, so a
# callback can outlive it without slowing the suite.
SHORT_PEER_TIMEOUT_SECONDS = 0.5
# How long the slow callback takes: well past that patience, whatever the machine's load.
SLOW_CALLBACK_SECONDS = 3 * SHORT_PEER_TIMEOUT_SECONDS


@pytest.fixture
def impatient(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger over a service that waits only SHORT_PEER_TIMEOUT_SECONDS for a callback."""
    monkeypatch.setattr(service, "PEER_TIMEOUT_SECONDS", SHORT_PEER_TIMEOUT_SECONDS)
    served = ServedSqliteStore(tmp_path / "ledger.db")
    ledger = Ledger(served, LedgerKeys.generate(), clock=FakeClock())
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_A, EXPIRY, 100_000, EUR)
    yield ledger
    ledger.check_balanced()
    ledger.close()


def _authorize(ledger: Ledger, n: int, respond: object, hold_id: str) -> bytes:
    return ledger.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=100 + n,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"xid-%d" % n,
        pi_digest=b"pi-%d" % n,
        rrpid=b"rrpid-%d" % n,
        request_digest=b"digest-%d" % n,
        respond=respond,  # type: ignore[arg-type]
        hold_id=hold_id,
    )


def _never(outcome: Outcome) -> bytes:
    raise AssertionError("a prebuilt approval that fits must not call back")


def _slow(outcome: Outcome) -> bytes:
    time.sleep(SLOW_CALLBACK_SECONDS)  # a key backend that stalls while it signs
    return b"answer-1"


def test_a_callback_past_the_peer_timeout_never_shifts_the_answers(impatient: Ledger) -> None:
    expected = {n: b"answer-%d" % n for n in range(1, 5)}
    answers: dict[int, bytes | StoreError] = {}
    for n, answer in expected.items():
        hold_id = new_hold_id()
        respond = _slow if n == 1 else PrebuiltApproval(hold_id, 100 + n, EUR, answer, _never)
        try:
            answers[n] = _authorize(impatient, n, respond, hold_id)
        except StoreError as exc:
            answers[n] = exc
    wrong = {
        n: answer
        for n, answer in answers.items()
        if answer != expected[n] and not isinstance(answer, StoreUnavailable)
    }
    assert wrong == {}, "an answer reached another request, or failed the wrong way"
    for n, answer in answers.items():
        stored = impatient.stored_response(b"rrpid-%d" % n, b"digest-%d" % n)
        assert stored in (None, expected[n]), f"request {n}'s stored answer is another's"
        if isinstance(answer, bytes):
            assert stored == answer
    # The service gave up on the slow callback and rolled its operation back.
    assert isinstance(answers[1], StoreUnavailable)
    assert impatient.stored_response(b"rrpid-1", b"digest-1") is None
    # The next operations dialled afresh and got their own answers.
    assert [answers[n] for n in (2, 3, 4)] == [expected[n] for n in (2, 3, 4)]


# -- the service's side: a raw worker that gets out of step


class _Captured(Exception):
    """Raised by ``_CapturingStore`` to hand back the operation it was given."""


class _CapturingStore(LedgerStore):
    """Catches the operation a ledger call would hand its store, and runs nothing."""

    def __init__(self) -> None:
        self.operation: Callable[[Transaction], Any] | None = None

    def execute(self, work: Callable[[Transaction], Any]) -> Any:
        self.operation = work
        raise _Captured

    def read(self, query: Callable[[Transaction], Any]) -> Any:
        raise _Captured

    def close(self) -> None:
        pass


def _authorization_that_calls_back() -> bytes:
    """An authorization's EXECUTE payload whose ``respond`` stays home as callback 0."""
    capturing = _CapturingStore()
    ledger = Ledger(capturing, LedgerKeys.generate(), clock=FakeClock())
    with pytest.raises(_Captured):
        _authorize(ledger, 1, lambda outcome: b"unused", new_hold_id())
    payload, callbacks = wire.dump_operation(capturing.operation)
    assert len(callbacks) == 1
    return payload


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


@pytest.mark.parametrize(
    ("kind", "number", "payload"),
    [
        (wire.RETURN, 2, wire.dump_value(b"answer")),  # numbered for another operation
        (wire.RESULT, 1, wire.dump_value(b"answer")),  # not an answer to a call
        (wire.RETURN, 1, b"not a pickle"),
    ],
    ids=["wrong-number", "wrong-kind", "unreadable"],
)
def test_a_callback_answered_out_of_step_closes_the_connection(
    served: ServedSqliteStore, kind: int, number: int, payload: bytes
) -> None:
    with _dial(served.socket_path) as sock:
        wire.send_frame(sock, wire.EXECUTE, 1, _authorization_that_calls_back())
        assert wire.receive_answer(sock, 1)[0] == wire.CALL
        wire.send_frame(sock, kind, number, payload)
        assert sock.recv(1) == b""  # closed: no answer, and no next operation read
    assert _stored(served) is None  # the authorization was rolled back
    assert served.service.connections == 1  # only the store's own


@pytest.mark.parametrize("numbers", [(2,), (1, 1), (1, 3)], ids=["first-is-2", "repeat", "skip"])
def test_an_operation_out_of_turn_closes_the_connection(
    served: ServedSqliteStore, numbers: tuple[int, ...]
) -> None:
    query = wire.dump_value(
        functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    )
    with _dial(served.socket_path) as sock:
        for number in numbers[:-1]:  # in turn: answered
            wire.send_frame(sock, wire.READ, number, query)
            assert wire.receive_answer(sock, number)[0] == wire.RESULT
        wire.send_frame(sock, wire.READ, numbers[-1], query)
        assert sock.recv(1) == b""
    assert _stored(served) is None  # and the service still serves the others


def test_operation_numbers_wrap_round_and_never_use_0() -> None:
    assert wire.next_number(0) == 1
    assert wire.next_number(1) == 2
    assert wire.next_number(wire.MAX_NUMBER) == 1


# -- the worker's side: a service that gets out of step


class _ScriptedService:
    """A ledger service that answers each operation with the next frame of a script
    (kind, offset from the operation's number, payload), and counts its connections."""

    def __init__(self, path: str, script: list[tuple[int, int, bytes]]) -> None:
        self._script = list(script)
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
            with sock:
                self._answer_until_closed(sock)

    def _answer_until_closed(self, sock: socket.socket) -> None:
        while self._script:
            try:
                _, number, _ = wire.receive_frame(sock)
            except (OSError, wire.WireError):
                return  # the worker dropped this connection
            kind, offset, payload = self._script.pop(0)
            wire.send_frame(sock, kind, number + offset, payload)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=30)


_FINE = (wire.RESULT, 0, wire.dump_value("fine"))


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        ((wire.RESULT, 1, wire.dump_value("another's")), StoreUnavailable),
        ((wire.RESULT, 0, b"not a pickle"), StoreUnavailable),
        ((wire.RETURN, 0, wire.dump_value("fine")), StoreUnavailable),
        ((wire.CALL, 0, wire.dump_value("no call")), StoreUnavailable),
        ((wire.ERROR, 0, wire.dump_value("no error")), StoreUnavailable),
        ((wire.ERROR, 0, wire.dump_value(StoreError("the database failed"))), StoreError),
    ],
    ids=[
        "wrong-number",
        "unreadable",
        "wrong-kind",
        "malformed-call",
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
        assert store.read(query) == "fine"
        assert scripted.accepted == 2  # the second operation came on a new connection
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
        assert store.read(query) == "fine"
        assert scripted.accepted == 1
    finally:
        store.close()
        scripted.close()
