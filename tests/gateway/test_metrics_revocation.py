"""The revocation refresh's health on a live page: a bank served as ``setpay gateway serve``
(two workers) whose CA keys are behind ``TokenGone`` (``token_gone_serve``), its
revocation data made due by a BCI published in its ca.db as if hours ago."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from gateway.bank_pki import BankPki, load_bank_pki, open_ca_store
from gateway.ca import CaStore
from gateway.ca.publishing import current_revocation
from gateway.ca.watcher import valid_until
from setcore.pki.bci import BCI_LIFETIME
from setpay.v1 import registration_pb2, services_pb2_grpc
from tests.metrics_page import check_with_promtool

from .ca.revocation_support import bank_trust, publish_dated
from .served import ServedBank, serve_bank, value, wait_for, workers_of
from .test_metrics import assert_labels_from_fixed_sets

FAILURES = "setpay_revocation_refresh_failures_total"
VALID_UNTIL = "setpay_revocation_valid_until_seconds"
# What a worker logs when its re-publishing fails (``gateway.ca.watcher``).
PUBLISH_FAILED = "revocation refresh failed (re-publishing"
WORKER_SERVING = re.compile(r"worker \d+ serving \(pid ")
# A BCI published this long ago is long due for re-publishing and current for 5 h more.
ALERT_AGE = BCI_LIFETIME - timedelta(hours=5)


def _serve(root: Path, flag: Path, workers: int) -> ServedBank:
    """``served.serve_bank``, run through ``token_gone_serve`` with ``flag``."""
    return serve_bank(root, workers=workers, command=("tests.gateway.token_gone_serve", str(flag)))


def _ask_until(bank: ServedBank, pki: BankPki, what: str, done: Callable[[], bool]) -> None:
    """Ask the CA for its BCI, each time on a new connection (the kernel hands each to
    either worker), until ``done``: every call lets its worker's watcher poll ca.db."""
    root = (bank.directory / "tls" / "root.pem").read_bytes()
    request = registration_pb2.GetBrandCRLIdentifierRequest(brand_id=pki.brand_id)

    def asked_and_done() -> bool:
        with grpc.secure_channel(
            f"127.0.0.1:{bank.ca_port}",
            grpc.ssl_channel_credentials(root),
            options=[("grpc.use_local_subchannel_pool", 1)],
        ) as channel:
            stub = services_pb2_grpc.CertificateAuthorityServiceStub(channel)  # type: ignore[no-untyped-call]
            stub.GetBrandCRLIdentifier(request, timeout=30)
        time.sleep(0.1)
        return done()

    wait_for(what, asked_and_done)


def _newest_until(store: CaStore, pki: BankPki) -> float:
    """When the newest revocation data in ca.db stops being current, as a worker that
    installed it judges (Unix seconds)."""
    found = current_revocation(store)
    assert found is not None
    _, data = found
    trust = bank_trust(pki)
    trust.update_revocation(data.bci, data.crls, datetime.now(UTC))
    assert trust.revocation is not None
    return valid_until(trust.revocation).timestamp()


@pytest.fixture
def flag(tmp_path: Path) -> Path:
    gone = tmp_path / "token-gone"
    gone.touch()
    return gone


@pytest.fixture
def bank(tmp_path: Path, flag: Path) -> Iterator[ServedBank]:
    bank = _serve(tmp_path, flag, workers=2)
    try:
        yield bank
    finally:
        bank.close()


def test_a_failing_refresh_and_the_end_of_the_data_held_are_on_the_page(
    bank: ServedBank, flag: Path
) -> None:
    config = bank.world.config
    pki, store = load_bank_pki(config), open_ca_store(config)
    try:
        # From the first scrape: no failure yet, and when the data published at init ends.
        samples = bank.scrape()
        assert samples.get((FAILURES, frozenset({("step", "publish")}))) == 0
        assert samples.get((FAILURES, frozenset({("step", "install")}))) == 0
        first_end = _newest_until(store, pki)
        assert value(samples, VALID_UNTIL) == first_end

        # ca.db's newest BCI becomes one long due for re-publishing, current for five
        # hours more; the CA keys' token is gone, so re-publishing it fails.
        publish_dated(store, pki, ALERT_AGE)
        due_end = _newest_until(store, pki)
        assert due_end < first_end
        _ask_until(
            bank, pki, "a failed re-publishing on the page",
            lambda: value(bank.scrape(), FAILURES, step="publish") >= 1,
        )  # fmt: skip
        # One failure per worker that tried (the next try is a minute later), each logged.
        wait_for(
            "the page to count every failure logged",
            lambda: (
                value(bank.scrape(), FAILURES, step="publish") == bank.log().count(PUBLISH_FAILED)
            ),
        )
        # The earliest end any worker holds: the due BCI's (a worker not asked since may
        # still hold the first one).
        wait_for("the due data's end", lambda: value(bank.scrape(), VALID_UNTIL) == due_end)
        text = bank.scrape_text()
        samples = bank.scrape()
        failed = value(samples, FAILURES, step="publish")
        assert failed == bank.log().count(PUBLISH_FAILED) >= 1
        assert value(samples, FAILURES, step="install") == 0
        # What the operators alert on: under six hours of current data left.
        assert value(samples, VALID_UNTIL) - time.time() < 6 * 3600
        check_with_promtool(text)
        assert_labels_from_fixed_sets(text)

        # The token is back and both workers die: their replacements re-publish at start.
        # What the dead held no longer counts: the page shows the live workers' data.
        flag.unlink()
        for pid in workers_of(bank.process.pid):
            os.kill(pid, signal.SIGKILL)
        wait_for("both replaced", lambda: len(WORKER_SERVING.findall(bank.log())) == 4)
        fresh_end = _newest_until(store, pki)
        assert fresh_end > due_end
        _ask_until(
            bank, pki, "the live workers' end",
            lambda: value(bank.scrape(), VALID_UNTIL) == fresh_end,
        )  # fmt: skip
        # The dead workers' failures stay counted: a total never steps back.
        assert value(bank.scrape(), FAILURES, step="publish") == failed
        assert bank.stop() == 0, bank.log()
    finally:
        store.close()
        pki.close()


def test_a_worker_replaced_while_the_ca_token_is_away_starts_on_current_data(
    bank: ServedBank, flag: Path
) -> None:
    """A running worker serves on while re-publishing fails and the data held is current;
    a worker that dies meanwhile is replaced on the same terms, instead of failing to
    start and so stopping the whole bank."""
    config = bank.world.config
    pki, store = load_bank_pki(config), open_ca_store(config)
    try:
        publish_dated(store, pki, ALERT_AGE)  # due for re-publishing, current for 5 h
        victim, *_ = workers_of(bank.process.pid)
        os.kill(victim, signal.SIGKILL)
        wait_for("the replacement", lambda: len(WORKER_SERVING.findall(bank.log())) == 3)
        assert "could not re-publish the CRLs and BCI at start" in bank.log()
        assert bank.process.poll() is None, bank.log()
        _ask_until(bank, pki, "an answer from each worker", lambda: True)
        assert bank.stop() == 0, bank.log()
    finally:
        store.close()
        pki.close()
