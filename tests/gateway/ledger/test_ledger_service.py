"""The ledger service and its wire: what may cross, what stays home, what fails how.

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
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import (
    Decline,
    Declined,
    Ledger,
    LedgerKeys,
    Outcome,
    PrebuiltApproval,
    RemoteLedgerStore,
    StoreError,
    StoreUnavailable,
    UnknownHold,
    authorization,
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


def _authorize(ledger: Ledger, amount: int, respond: object, rrpid: bytes = b"r1") -> bytes:
    return ledger.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=amount,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"x-" + rrpid,
        pi_digest=b"pi-" + rrpid,
        rrpid=rrpid,
        request_digest=b"d-" + rrpid,
        respond=respond,  # type: ignore[arg-type]
        hold_id=PREBUILT_HOLD,
    )


PREBUILT_HOLD = new_hold_id()


class Recorder:
    """An ``otherwise`` that records what it was asked to answer."""

    def __init__(self) -> None:
        self.asked: list[Outcome] = []

    def __call__(self, outcome: Outcome) -> bytes:
        self.asked.append(outcome)
        return b"built for " + type(outcome).__name__.encode()


def test_a_prebuilt_approval_is_answered_without_calling_back(ledger: Ledger) -> None:
    otherwise = Recorder()
    answer = _authorize(
        ledger, 500, PrebuiltApproval(PREBUILT_HOLD, 500, EUR, b"signed", otherwise)
    )
    assert answer == b"signed"
    assert otherwise.asked == []  # the only callback: never called
    assert ledger.hold(PREBUILT_HOLD).amount == 500


def test_an_unexpected_outcome_calls_back_into_the_caller(ledger: Ledger) -> None:
    otherwise = Recorder()
    # Over the card's limit: declined, so the prebuilt approval does not fit.
    respond = PrebuiltApproval(PREBUILT_HOLD, 50_000, EUR, b"signed", otherwise)
    answer = _authorize(ledger, 50_000, respond)
    assert answer == b"built for Declined"
    assert otherwise.asked == [Declined(Decline.INSUFFICIENT_FUNDS)]
    # The bytes built in the caller are what the service stored.
    assert ledger.stored_response(b"r1", b"d-r1") == b"built for Declined"


class Refusal(Exception):
    """An exception of the caller's own, which the service cannot even unpickle."""


def test_a_callback_that_raises_reaches_its_caller_and_nothing_is_kept(ledger: Ledger) -> None:
    refusal = Refusal("the key backend is gone")

    def respond(outcome: Outcome) -> bytes:
        raise refusal

    with pytest.raises(Refusal) as raised:
        _authorize(ledger, 500, respond)
    assert raised.value is refusal  # the caller's own exception object
    with pytest.raises(UnknownHold):
        ledger.hold(PREBUILT_HOLD)
    assert ledger.stored_response(b"r1", b"d-r1") is None
    # The PI was not used up: the same request decides afresh.
    assert _authorize(ledger, 500, lambda outcome: b"second try") == b"second try"


def test_a_transaction_never_leaves_the_service(served: ServedSqliteStore) -> None:
    # A lambda is not ledger code: it stays home as a callback, and the transaction it
    # would be called with cannot be sent to it.
    with pytest.raises(StoreError, match=r"cannot be sent|cannot carry"):
        served.read(lambda tx: tx.one("SELECT 1 AS ok"))


def test_ledger_code_travels_by_value_and_other_callables_stay_home() -> None:
    def closure(outcome: Outcome) -> bytes:
        return b""

    operation = functools.partial(authorization.expire_holds, now_ms=1, limit=5)
    payload, callbacks = wire.dump_operation(operation)
    assert callbacks == []
    assert wire.load(payload).func is authorization.expire_holds
    respond = PrebuiltApproval("h", 1, EUR, b"x", closure)
    payload, callbacks = wire.dump_operation(respond)
    assert callbacks == [closure]
    proxies: list[int] = []

    def proxy(number: int) -> str:
        proxies.append(number)
        return "proxy"

    loaded = wire.load(payload, callback=proxy)
    assert (proxies, loaded.otherwise, loaded.response) == ([0], "proxy", b"x")
    # A value may not carry a callable at all.
    with pytest.raises(StoreError, match="cannot carry"):
        wire.dump_value((closure,))


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
    assert isinstance(error, StoreError)
    assert "system may not cross to the ledger" in str(error)
    assert not marker.exists()
    # Nor what a ledger module merely imports: gateway.ledger.ledger imports ``time``.
    smuggled = b"\x80\x02cgateway.ledger.ledger\ntime\n."  # GLOBAL, STOP
    error = wire.load(_raw_exchange(served.socket_path, wire.EXECUTE, smuggled)[1])
    assert "may not cross" in str(error)
    # Nor may a frame smuggle a callback number where none belongs.
    kind, body = _raw_exchange(served.socket_path, wire.RESULT, pickle.dumps(1))
    assert kind == wire.ERROR and "where an operation belongs" in str(wire.load(body))
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
