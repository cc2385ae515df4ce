"""ca.db's housekeeping sweep fails no request.

Every request may sweep ca.db of expired sessions and old answers (at most once per
``HOUSEKEEPING_INTERVAL_MS``). The sweep's failure used to be the request's: a ca.db busy
for the sweep's write (``setpay ca revoke`` holding the lock) failed with UNAVAILABLE a
request that needed no write at all. Now the sweep's failure is logged and counted, and
tried again ``HOUSEKEEPING_RETRY_MS`` later, not at every request (each try may wait out
the busy timeout). Each failure is counted by cause for the metrics
(``setpay_ca_housekeeping_failures_total``): busy (another writer; the sweep never
waits), outage, or bug. Real parts: a scratch ca.db held by another connection, the CA
served by a gRPC server on port 0.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from gateway import metrics
from gateway.ca import CertificateAuthority
from gateway.ca import authority as ca_authority
from gateway.ca import store as ca_store
from gateway.ca.authority import HousekeepingCounters
from gateway.ca.policy import CaPolicy
from gateway.ca.records import Session
from gateway.metrics_labels import HOUSEKEEPING_CAUSES
from setcore.freshness import now_ms
from setcore.registration_merchant import MerchantIdentity
from setpay.v1 import registration_pb2, services_pb2_grpc

from .conftest import CARD, EXPIRY, Bank, serving
from .flows import register_cardholder, start_merchant
from .revocation_support import (
    SHORT_BUSY_TIMEOUT_MS,
    authority_keys,
    bank_trust,
    locked,
    new_ca_db,
)

S = registration_pb2
HOUSEKEEPING_FAILURES = "setpay_ca_housekeeping_failures_total"


class Clock:
    """The CA's clock (ms), stopped at its start and moved ``ahead`` by the test alone."""

    def __init__(self) -> None:
        self.start = now_ms()
        self.ahead = 0

    def __call__(self) -> int:
        return self.start + self.ahead


@dataclass
class Served:
    ca: CertificateAuthority
    stub: services_pb2_grpc.CertificateAuthorityServiceStub
    clock: Clock
    path: Path


@contextmanager
def _served(ec_bank: Bank, path: Path) -> Iterator[Served]:
    """A CA of the EC bank's keys on a scratch ca.db at ``path``, not swept yet."""
    store = new_ca_db(path, ec_bank.pki)
    clock = Clock()
    try:
        keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
        ca = CertificateAuthority(keys, store, bank_trust(ec_bank.pki), ec_bank.issuer, clock=clock)
        with serving(ca) as stub:
            yield Served(ca, stub, clock, store.path)
    finally:
        store.close()


@pytest.fixture
def served(ec_bank: Bank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """``_served``, the store's busy timeout short."""
    monkeypatch.setattr(ca_store, "BUSY_TIMEOUT_MS", SHORT_BUSY_TIMEOUT_MS)
    with _served(ec_bank, tmp_path / "ca.db") as served:
        yield served


def _put_expired(served: Served, lid_ca: bytes) -> None:
    """A session that expired long ago, as one left by a wallet that went away."""
    with served.ca._store.write() as tx:
        tx.put_session(Session(lid_ca, b"lid-ee", 1, 0, None, False, "", "", 0, 1))


def _sessions(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM sessions").fetchone()[0])
    finally:
        db.close()


def _bci(served: Served) -> None:
    """A request that needs no write: it must be served."""
    try:
        response = served.stub.GetBrandCRLIdentifier(S.GetBrandCRLIdentifierRequest())
    except grpc.RpcError as exc:
        pytest.fail(f"answered {exc.code()} ({exc.details()})")  # type: ignore[attr-defined]
    assert response.brand_crl_identifier


def test_a_busy_ca_db_during_the_sweep_fails_no_request(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    _put_expired(served, b"E" * 16)
    with locked(served.ca._store), caplog.at_level(logging.INFO, logger=ca_authority.__name__):
        _bci(served)  # the first request sweeps: ca.db is busy
        assert served.ca.housekeeping == HousekeepingCounters(busy=1, outages=0, bugs=0)
        _bci(served)  # the retry waits for its pause: this request pays no busy timeout
        assert served.ca.housekeeping == HousekeepingCounters(busy=1, outages=0, bugs=0)
    (record,) = caplog.records
    # Another writer is the CA at work, not an outage: said at INFO, counted as busy.
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "housekeeping skipped, ca.db busy (StoreBusy" in record.getMessage()
    assert "SQLITE_BUSY" in record.getMessage()
    assert _sessions(served.path) == 1  # not swept

    retry, interval = ca_authority.HOUSEKEEPING_RETRY_MS, ca_authority.HOUSEKEEPING_INTERVAL_MS
    served.clock.ahead = retry - 1
    _bci(served)
    assert _sessions(served.path) == 1  # the pause is not over
    served.clock.ahead = retry
    _bci(served)
    assert _sessions(served.path) == 0  # swept at the retry
    assert served.ca.housekeeping == HousekeepingCounters(busy=1, outages=0, bugs=0)

    # Swept: the next sweep waits for the whole interval again.
    _put_expired(served, b"F" * 16)
    served.clock.ahead = retry + interval - 1
    _bci(served)
    assert _sessions(served.path) == 1
    served.clock.ahead = retry + interval
    _bci(served)
    assert _sessions(served.path) == 0


# Well under ca.db's busy timeout (5 s), which a request waiting behind the sweep paid;
# far above a request's time on a loaded machine.
PROMPT_SECONDS = ca_store.BUSY_TIMEOUT_MS / 1000 / 2
# Long enough for the request that sweeps to be in its sweep, were it to wait there.
IN_THE_SWEEP_SECONDS = 0.3


def test_a_sweep_on_a_busy_ca_db_holds_up_no_request(ec_bank: Bank, tmp_path: Path) -> None:
    """The store's own busy timeout, and ca.db busy: the sweep tries once and skips, so
    the request that sweeps is answered at once, and so is a user of the store meanwhile
    (the revocation watcher's poll, as an authorization makes it). Before, the sweep
    waited out the busy timeout holding the store's lock: both waited some 5 s."""
    with _served(ec_bank, tmp_path / "ca.db") as served:
        _put_expired(served, b"G" * 16)
        with locked(served.ca._store), ThreadPoolExecutor(max_workers=1) as pool:
            started = time.monotonic()
            sweeping = pool.submit(_bci, served)
            time.sleep(IN_THE_SWEEP_SECONDS)
            meanwhile = time.monotonic()
            served.ca.watcher.check(force=True)
            polled = time.monotonic() - meanwhile
            sweeping.result(timeout=ca_store.BUSY_TIMEOUT_MS / 1000 * 3)
            answered = time.monotonic() - started
        assert served.ca.housekeeping == HousekeepingCounters(busy=1, outages=0, bugs=0)
        assert _sessions(served.path) == 1  # skipped, for the retry
    assert answered < PROMPT_SECONDS and polled < PROMPT_SECONDS, (answered, polled)


def test_a_sweep_meeting_a_bug_fails_no_request_and_logs_its_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The sweep is the CA's business, not the requester's: a bug in it (here a table
    gone from ca.db) is logged with its traceback and the request is served."""
    db = sqlite3.connect(served.path, isolation_level=None)
    try:
        db.execute("DROP TABLE responses")
    finally:
        db.close()
    with caplog.at_level(logging.INFO, logger=ca_authority.__name__):
        _bci(served)
    assert served.ca.housekeeping == HousekeepingCounters(busy=0, outages=0, bugs=1)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "no such table: responses" in caplog.text


@contextmanager
def _ca_db_away(served: Served) -> Iterator[None]:
    """ca.db's file gone from its path (a volume unmounted) while the CA's own connection
    keeps it open: the sweep, which opens the path anew, meets an outage."""
    away = served.path.with_name("away.db")
    served.path.rename(away)
    try:
        yield
    finally:
        away.rename(served.path)


def test_a_sweep_that_cannot_open_ca_db_is_an_outage_and_fails_no_request(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """Not busy: ca.db cannot be had at all. Counted and logged as an outage (WARNING),
    apart from the sweeps another writer made skip, which are the CA at work."""
    _put_expired(served, b"H" * 16)
    with _ca_db_away(served), caplog.at_level(logging.INFO, logger=ca_authority.__name__):
        _bci(served)
    assert served.ca.housekeeping == HousekeepingCounters(busy=0, outages=1, bugs=0)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "housekeeping failed (StoreError" in record.getMessage()
    assert _sessions(served.path) == 1  # not swept


def test_failed_sweeps_are_counted_by_cause_into_the_metrics(
    served: Served, ec_bank: Bank, registry: CollectorRegistry
) -> None:
    """The CA counts each failed sweep as busy (another writer), an outage (ca.db gone)
    or a bug (a table gone);
    the sampler adds what the counts gained to ``setpay_ca_housekeeping_failures_total``,
    at zero from the start."""
    sampler = metrics.Sampler(bank_trust(ec_bank.pki), object(), served.ca.watcher, served.ca)

    def failed(cause: str) -> float | None:
        return registry.get_sample_value(HOUSEKEEPING_FAILURES, {"cause": cause})

    def counts() -> tuple[float | None, ...]:
        return failed("busy"), failed("outage"), failed("bug")

    assert counts() == (0, 0, 0)
    with locked(served.ca._store):
        _bci(served)
    assert served.ca.housekeeping == HousekeepingCounters(busy=1, outages=0, bugs=0)
    sampler.sample()
    assert counts() == (1, 0, 0)

    with _ca_db_away(served):
        served.clock.ahead = ca_authority.HOUSEKEEPING_RETRY_MS
        _bci(served)
    assert served.ca.housekeeping == HousekeepingCounters(busy=1, outages=1, bugs=0)
    sampler.sample()
    assert counts() == (1, 1, 0)

    db = sqlite3.connect(served.path, isolation_level=None)
    try:
        db.execute("DROP TABLE responses")
    finally:
        db.close()
    served.clock.ahead = 2 * ca_authority.HOUSEKEEPING_RETRY_MS
    _bci(served)
    assert served.ca.housekeeping == HousekeepingCounters(busy=1, outages=1, bugs=1)
    sampler.sample()
    sampler.sample()  # nothing gained since: nothing added
    assert counts() == (1, 1, 1)


def test_every_count_of_failed_sweeps_has_its_cause_label() -> None:
    """The metrics' causes (one set, ``HOUSEKEEPING_CAUSES``) name the counters' fields,
    every one: a count added to the CA and not to the set would reach no series."""
    counted = sorted(field.name for field in fields(HousekeepingCounters))
    assert sorted(HOUSEKEEPING_CAUSES.values()) == counted


def _answers(path: Path) -> dict[str, int]:
    """Stored answers by kind."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT kind, count(*) FROM responses GROUP BY kind").fetchall()
    finally:
        db.close()
    return {str(kind): int(count) for kind, count in rows}


def test_anonymous_answers_are_swept_once_their_session_is_over(
    ec_bank: Bank, tmp_path: Path
) -> None:
    """CardCInit, RegForm and Me-AqCInit need no key and no card: their answers (a few
    KB each) were kept a week, so anyone could fill ca.db. They go once a session's
    lifetime is over; a CertReq's answer stays for retries (``response_retention_ms``)."""
    with _served(ec_bank, tmp_path / "ca.db") as served:
        bank = replace(ec_bank, ca=served.ca, stub=served.stub)
        register_cardholder(bank, CARD, EXPIRY)
        start_merchant(bank, MerchantIdentity("corner-shop-1", "Corner Shop Ltd", ""))
        made = {"card-c-init": 1, "reg-form": 1, "me-aq-c-init": 1, "cert": 1}
        assert _answers(served.path) == made

        lifetime = CaPolicy().session_lifetime_ms
        served.clock.ahead = lifetime - 1
        _bci(served)  # a sweep (the first request's swept nothing): within the session
        assert _answers(served.path) == made
        served.clock.ahead = lifetime + ca_authority.HOUSEKEEPING_INTERVAL_MS
        _bci(served)
        assert _answers(served.path) == {"cert": 1}
