"""The ledger service and its wire: what may cross, what is refused, what fails how.

The money rules run over the service in every contract test (the ``sqlite-service``
backend); these tests are about the boundary itself.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
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
    RrpidReused,
    StoreError,
    StoreUnavailable,
    Unanswered,
    expiry,
    idempotency,
    new_hold_id,
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

# An unprivileged user for the test of another user's connection (Debian's "nobody").
NOBODY_UID = 65534


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedSqliteStore]:
    store = ServedSqliteStore(tmp_path / "ledger.db")
    yield store
    store.close()


@pytest.fixture
def ledger(served: ServedSqliteStore) -> Ledger:
    led = Ledger(served, LedgerKeys.generate(), clock=FakeClock())
    led.open_merchant_account(MERCHANT, EUR)
    led.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
    return led


PREBUILT_HOLD = new_hold_id()


def _authorize(
    ledger: Ledger, amount: int, respond: Callable[[Outcome], bytes], prebuilt: PrebuiltApproval
) -> bytes:
    return ledger.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=amount,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"x-r1",
        pi_digest=b"pi-r1",
        rrpid=b"r1",
        request_digest=b"d-r1",
        respond=respond,
        hold_id=PREBUILT_HOLD,
        prebuilt=prebuilt,
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every operation a worker sends from now on: (kind, operation number)."""
    frames: list[tuple[int, int]] = []
    send_frame = wire.send_frame

    def recording(sock: socket.socket, kind: int, number: int, payload: bytes) -> None:
        if kind in (wire.EXECUTE, wire.READ):  # the service's answers use this too
            frames.append((kind, number))
        send_frame(sock, kind, number, payload)

    monkeypatch.setattr(wire, "send_frame", recording)
    return frames


class Recorder:
    """A ``respond`` that records what it was asked to answer, where and when: the
    thread it ran in, and what the ledger had recorded under the RRPID at that moment."""

    def __init__(self, store: RemoteLedgerStore) -> None:
        self._store = store
        self.asked: list[Outcome] = []
        self.threads: list[int] = []
        self.recorded: list[object] = []

    def __call__(self, outcome: Outcome) -> bytes:
        self.asked.append(outcome)
        self.threads.append(threading.get_ident())
        # A read sees only what is committed, and could not run on this connection if an
        # operation of this thread were still under way.
        self.recorded.append(
            self._store.read(
                functools.partial(idempotency.lookup, rrpid=b"r1", request_digest=b"d-r1")
            )
        )
        return b"built for " + type(outcome).__name__.encode()


def test_a_prebuilt_approval_is_answered_in_one_operation(
    ledger: Ledger, served: ServedSqliteStore, sent: list[tuple[int, int]]
) -> None:
    respond = Recorder(served)
    prebuilt = PrebuiltApproval(PREBUILT_HOLD, 500, EUR, b"signed")
    answer = _authorize(ledger, 500, respond, prebuilt)
    assert answer == b"signed"
    assert respond.asked == []  # never called
    assert [kind for kind, _ in sent] == [wire.EXECUTE]  # decided and stored at once
    assert ledger.hold(PREBUILT_HOLD).amount == 500
    assert ledger.stored_response(b"r1", b"d-r1") == b"signed"


def test_another_outcome_is_answered_in_the_worker_after_the_decision_committed(
    ledger: Ledger, served: ServedSqliteStore, sent: list[tuple[int, int]]
) -> None:
    respond = Recorder(served)
    # Over the card's limit: declined, so the prebuilt approval does not fit.
    prebuilt = PrebuiltApproval(PREBUILT_HOLD, 50_000, EUR, b"signed")
    answer = _authorize(ledger, 50_000, respond, prebuilt)
    assert answer == b"built for Declined"
    declined = Declined(Decline.INSUFFICIENT_FUNDS)
    assert respond.asked == [declined]
    assert respond.threads == [threading.get_ident()]  # in the caller's thread
    # When ``respond`` ran, the decision was committed and waiting for its answer.
    (recorded,) = respond.recorded
    assert isinstance(recorded, Unanswered) and recorded.outcome == declined
    # Two operations (decide, then store the answer), with respond's own look between.
    assert [kind for kind, _ in sent] == [wire.EXECUTE, wire.READ, wire.EXECUTE]
    first = sent[0][1]
    assert [number for _, number in sent] == [first, first + 1, first + 2]
    # The bytes built in the worker are what the service stored.
    assert ledger.stored_response(b"r1", b"d-r1") == b"built for Declined"


class _Keeper:
    """Not ledger code, and holds what must never appear in an error message."""

    def __init__(self) -> None:
        self.pan = PAN_A

    def __repr__(self) -> str:
        return f"_Keeper({self.pan})"

    def __call__(self, tx: object) -> None:
        return None

    def sign(self, tx: object) -> None:
        return None


def _closure() -> Callable[[object], None]:
    secret = PAN_A

    def query(tx: object) -> None:
        assert secret

    return query


def _holding(foreign: Any) -> object:
    """A ledger operation with ``foreign`` among its arguments."""
    return functools.partial(
        idempotency.decide_once,
        rrpid=b"r",
        request_digest=b"d",
        now_ms=1,
        decide=foreign,
        prebuilt=None,
    )


FOREIGN_CALLABLES: dict[str, tuple[Callable[[], object], str]] = {
    "lambda": (lambda: lambda tx: tx, "the function "),
    "closure": (_closure, "the function "),
    "bound-method": (lambda: _Keeper().sign, "the method "),
    "callable-object": (_Keeper, "an instance of "),
    "builtin": (lambda: os.system, "the built-in function "),
    "lambda-in-an-operation": (lambda: _holding(lambda tx: tx), "the function "),
    "method-in-an-operation": (lambda: _holding(_Keeper().sign), "the method "),
    "object-in-a-value": (lambda: PrebuiltApproval("h", 1, EUR, _Keeper()), "an instance "),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", FOREIGN_CALLABLES.values(), ids=FOREIGN_CALLABLES.keys())
def test_an_operation_holding_other_code_never_leaves_the_worker(
    served: ServedSqliteStore, sent: list[tuple[int, int]], case: tuple[Callable[[], object], str]
) -> None:
    make, described = case
    query = functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    assert served.read(query) is None
    operation: Any = make()
    for run in (served.execute, served.read):
        with pytest.raises(wire.NotLedgerCode) as raised:
            run(operation)
        message = str(raised.value)
        assert "only ledger code travels to the ledger service" in message
        assert described in message
        assert PAN_A not in message  # named by its type, never by its value
        # A caller's mistake, not an outage: not a StoreError (UNAVAILABLE to the gateway).
        assert isinstance(raised.value, TypeError)
        assert not isinstance(raised.value, StoreError)
    # Nothing was sent, and the connection goes on in step: same connection, next number.
    assert served.read(query) is None
    assert sent == [(wire.READ, sent[0][1]), (wire.READ, sent[0][1] + 1)]
    assert served.service.connections == 1


def test_ledger_code_and_values_travel_by_value() -> None:
    operation = functools.partial(expiry.expire_holds, now_ms=1, limit=5)
    loaded = wire.load(wire.dump_operation(operation))
    assert (loaded.func, loaded.args, loaded.keywords) == (
        expiry.expire_holds,
        (),
        {"now_ms": 1, "limit": 5},
    )
    prebuilt = PrebuiltApproval("h", 1, EUR, b"x")
    assert wire.load(wire.dump_value(prebuilt)) == prebuilt
    assert wire.load(wire.dump_value(Unanswered(Declined(Decline.HOLD_EXPIRED), 7, 5))) == (
        Unanswered(Declined(Decline.HOLD_EXPIRED), 7, 5)
    )
    error = wire.load(wire.dump_value(RrpidReused("reused")))
    assert isinstance(error, RrpidReused) and str(error) == "reused"
    assert isinstance(wire.load(wire.dump_value(ValueError("bad"))), ValueError)
    # A value of a class the service would refuse (``find_class``) is refused here already.
    with pytest.raises(wire.NotLedgerCode, match="the class pathlib"):
        wire.dump_value(Path("/"))
    with pytest.raises(wire.NotLedgerCode, match=r"the class builtins\.KeyError"):
        wire.dump_value(KeyError("k"))


def _raw_exchange(path: str, kind: int, payload: bytes) -> tuple[int, bytes]:
    """Send one frame as a new connection's first operation; return the answer's kind
    and payload."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        wire.send_frame(sock, kind, 1, payload)
        return wire.receive_answer(sock, 1)


def test_a_frame_naming_code_outside_the_ledger_is_refused(
    served: ServedSqliteStore, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    evil = pickle.dumps(functools.partial(os.system, f"touch {marker}"), protocol=5)
    kind, body = _raw_exchange(served.socket_path, wire.EXECUTE, evil)
    assert kind == wire.ERROR
    error = wire.load(body)
    # Nothing ran: the worker answers UNAVAILABLE (a retry is safe), not a final Error.
    assert isinstance(error, StoreUnavailable)
    assert "system may not cross to the ledger" in str(error)
    assert not marker.exists()
    # Nor what a ledger module merely imports: gateway.ledger.ledger imports ``time``.
    smuggled = b"\x80\x02cgateway.ledger.ledger\ntime\n."  # GLOBAL, STOP
    error = wire.load(_raw_exchange(served.socket_path, wire.EXECUTE, smuggled)[1])
    assert "may not cross" in str(error)
    # Nor may a frame name something held elsewhere (a persistent id: BININT1 0,
    # BINPERSID, STOP)...
    error = wire.load(_raw_exchange(served.socket_path, wire.EXECUTE, b"\x80\x05K\x00Q.")[1])
    assert isinstance(error, StoreUnavailable) and "unreadable" in str(error)
    # ... nor come as anything but an operation.
    kind, body = _raw_exchange(served.socket_path, wire.RESULT, pickle.dumps(1))
    error = wire.load(body)
    assert kind == wire.ERROR and "where an operation belongs" in str(error)
    assert isinstance(error, StoreUnavailable)
    # The service is unharmed.
    assert (
        served.read(functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d"))
        is None
    )


def test_an_oversized_frame_closes_the_connection(served: ServedSqliteStore) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(served.socket_path)
        header = (wire.MAX_FRAME_BYTES + 1).to_bytes(4, "big") + bytes([wire.EXECUTE])
        sock.sendall(header + (1).to_bytes(4, "big"))
        assert sock.recv(1) == b""  # closed, nothing read or answered
    assert served.service.connections == 1  # only the store's own


def test_a_gone_service_is_store_unavailable(tmp_path: Path) -> None:
    served = ServedSqliteStore(tmp_path / "ledger.db")
    ledger = Ledger(served, LedgerKeys.generate(), clock=FakeClock())
    ledger.check_health()
    served.service.close()
    # The old connection is closed: the store dials again, and nobody answers.
    with pytest.raises(StoreUnavailable, match="does not answer"):
        ledger.check_health()
    with pytest.raises(StoreUnavailable, match="does not answer"):
        RemoteLedgerStore(served.socket_path)
    served.close()


def test_another_user_is_refused(served: ServedSqliteStore) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test switches to another user id: run the suite as root (make test)")
    # Open the directory and socket to everyone, so only the service's own check is left.
    os.chmod(served.directory, 0o755)
    os.chmod(served.socket_path, 0o777)
    probe = (
        "import socket,sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(30)\n"
        "s.connect(sys.argv[1])\n"
        "print('closed' if s.recv(1) == b'' else 'open')\n"
    )
    # Debian's own Python: any user may run it, unlike a virtual environment under /root.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.fail("no python3 in /usr/bin or /bin to run as another user")
    result = subprocess.run(
        [python, "-c", probe, served.socket_path],
        user=NOBODY_UID,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "closed", result.stderr
