"""A request is decided within ``idempotency.DECIDED_WITHIN_MS`` of the moment the gateway
checked it, or never, on every store (SQLite, the ledger service, PostgreSQL).

The merchant's margin for building a request refused as too old afresh rests on it
(``clients.merchant.renewal``): a job that waited past the bound, for the writer's turn or
for a lock, ends undecided, nothing of it written, so that a later refusal's lookup has
seen every decision of those bytes there will ever be. The clock the bound reads is the
one the gateway dated its check with (``setcore.freshness.now_ms``), moved here by
hand; the ledger's own (a ``FakeClock``) dates holds, as ever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.ledger import (
    AnswerNotStored,
    Authorized,
    Outcome,
    PrebuiltApproval,
    StoreUnavailable,
    idempotency,
)
from setcore import freshness
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    Backend,
    Bank,
    PgCluster,
    postgres_backend,
    served_sqlite_backend,
    sqlite_backend,
)

BOUND = idempotency.DECIDED_WITHIN_MS
# The gateway's clock as these tests set it (Unix ms, inside the test cards' validity).
NOW = 1_800_000_000_000
# How long a held job is seen still waiting before the test lets it go: well under the
# SQLite store's busy timeout (5 s), past which the writer gives up its turn.
HELD_SECONDS = 0.3


@pytest.fixture
def conninfos() -> dict[str, str]:
    """The PostgreSQL schema of this test, once ``backend`` made one."""
    return {}


@pytest.fixture(params=["sqlite", "sqlite-service", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, conninfos: dict[str, str]) -> Backend:
    """The ledger fixtures' stores, the PostgreSQL one's connection string kept aside."""
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "ledger.db")
    if request.param == "sqlite-service":
        return served_sqlite_backend(tmp_path / "ledger.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    conninfos["postgres"] = cluster.new_schema()
    return postgres_backend(conninfos["postgres"])


@pytest.fixture
def gateway_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Set the gateway's clock (the one ``decide_once`` reads) to ``NOW`` plus a shift."""

    def at(shift_ms: int) -> None:
        monkeypatch.setattr(freshness, "now_ms", lambda: NOW + shift_ms)

    at(0)
    return at


@contextlib.contextmanager
def writer_held(backend: Backend, tmp_path: Path, conninfos: dict[str, str]) -> Iterator[None]:
    """No decision is written meanwhile: SQLite's write turn taken (the writer, in this
    process or the service's, waits for it), or PostgreSQL's ``requests`` table locked
    (a decision's INSERT, its last statement, waits for it)."""
    if backend.name == "postgres":
        with psycopg.connect(conninfos["postgres"]) as conn:
            conn.execute("LOCK TABLE requests IN EXCLUSIVE MODE")
            yield
            conn.rollback()
        return
    fd = os.open(f"{tmp_path / 'ledger.db'}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock goes with it


def authorize(
    bank: Bank,
    checked_at_ms: int | None,
    *,
    rrpid: bytes = b"r-1",
    respond: Callable[[Outcome], bytes] | None = None,
    **extra: Any,
) -> bytes:
    """Authorize 1000 on PAN_A under ``rrpid``, checked at ``checked_at_ms``."""
    return bank.ledger.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=1000,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"x-" + rrpid,
        pi_digest=b"pi-" + rrpid,
        rrpid=rrpid,
        request_digest=b"d-" + rrpid,
        respond=respond or bank.respond,
        checked_at_ms=checked_at_ms,
        **extra,
    )


def _nothing_written(bank: Bank, rrpid: bytes = b"r-1") -> None:
    assert bank.ledger.stored_response(rrpid, b"d-" + rrpid) is None
    assert bank.ledger.find_card_account(PAN_A).pending == 0
    assert bank.outcomes == []


@pytest.mark.usefixtures("gateway_clock")
def test_a_request_checked_the_bound_ago_is_decided(bank: Bank) -> None:
    authorize(bank, NOW - BOUND)
    assert isinstance(bank.last(), Authorized)
    assert bank.ledger.find_card_account(PAN_A).pending == 1000


@pytest.mark.usefixtures("gateway_clock")
@pytest.mark.parametrize("prebuilt", [False, True], ids=["answered-after", "prebuilt"])
def test_a_request_checked_longer_ago_is_not_decided_and_nothing_is_written(
    bank: Bank, prebuilt: bool
) -> None:
    ahead: dict[str, Any] = {
        "hold_id": "hold-1",
        "prebuilt": PrebuiltApproval("hold-1", 1000, EUR, b"ok"),
    }
    with pytest.raises(StoreUnavailable, match="not decided, to be checked afresh"):
        authorize(bank, NOW - BOUND - 1, **(ahead if prebuilt else {}))
    _nothing_written(bank)


def test_a_job_held_past_the_bound_ends_undecided_and_its_retry_is_decided(
    bank: Bank,
    backend: Backend,
    tmp_path: Path,
    conninfos: dict[str, str],
    gateway_clock: Callable[[int], None],
) -> None:
    """Checked at NOW and handed to the store, the job waits for the writer; the gateway's
    clock passes the bound meanwhile; let go, it is applied and undone. The same bytes,
    sent again and checked afresh, are then decided as any request is."""
    raised: list[BaseException] = []

    def first_sending() -> None:
        try:
            authorize(bank, NOW)
        except BaseException as exc:  # handed to the test thread
            raised.append(exc)

    sending = threading.Thread(target=first_sending)
    with writer_held(backend, tmp_path, conninfos):
        sending.start()
        sending.join(HELD_SECONDS)
        assert sending.is_alive(), "the job was not held"
        gateway_clock(BOUND + 1)
    sending.join(30)
    assert not sending.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], StoreUnavailable), raised
    _nothing_written(bank)

    answer = authorize(bank, NOW + BOUND + 1)  # the retry, checked as it arrives
    assert isinstance(bank.last(), Authorized)
    assert bank.ledger.stored_response(b"r-1", b"d-r-1") == answer
    assert bank.ledger.find_card_account(PAN_A).pending == 1000


def test_a_job_held_within_the_bound_is_decided(
    bank: Bank,
    backend: Backend,
    tmp_path: Path,
    conninfos: dict[str, str],
    gateway_clock: Callable[[int], None],
) -> None:
    done = threading.Event()

    def first_sending() -> None:
        authorize(bank, NOW)
        done.set()

    sending = threading.Thread(target=first_sending)
    with writer_held(backend, tmp_path, conninfos):
        sending.start()
        assert not done.wait(HELD_SECONDS)
        gateway_clock(BOUND)
    sending.join(30)
    assert done.is_set()
    assert isinstance(bank.last(), Authorized)


@pytest.mark.usefixtures("gateway_clock")
def test_a_stored_answer_is_returned_however_long_ago_its_retry_was_checked(
    bank: Bank,
) -> None:
    first = authorize(bank, NOW)
    assert authorize(bank, NOW - 10 * BOUND) == first
    assert len(bank.outcomes) == 1


@pytest.mark.usefixtures("gateway_clock")
def test_a_decision_awaiting_its_answer_is_answered_however_long_ago_it_was_checked(
    bank: Bank,
) -> None:
    """As the gateway answers a retry that no longer passes its checks: the handler run
    again as of the first check (``gateway.servicer``), its moment long past."""

    def broken(outcome: Outcome) -> bytes:
        raise RuntimeError("signing key unavailable")

    with pytest.raises(AnswerNotStored):
        authorize(bank, NOW, respond=broken)
    answer = authorize(bank, NOW - 10 * BOUND)
    assert bank.ledger.stored_response(b"r-1", b"d-r-1") == answer
    assert len(bank.outcomes) == 1 and isinstance(bank.last(), Authorized)


@pytest.mark.usefixtures("gateway_clock")
def test_a_caller_that_gives_no_moment_is_not_bounded(bank: Bank) -> None:
    authorize(bank, None)
    assert isinstance(bank.last(), Authorized)
