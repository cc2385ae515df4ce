"""Skipped sweeps of ca.db on a live page: a bank served as ``setpay gateway serve`` (two
workers) whose ca.db's write lock another connection holds, as ``setpay ca revoke``
holds it, while the CA is asked for its BCI. A worker's first CA call sweeps ca.db; the
sweep finds ca.db busy, skips, is logged (INFO) and counted as ``cause="busy"``, not as
an outage, and the call is served all the same. The page sums what the workers counted."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from setpay.v1 import registration_pb2, services_pb2_grpc
from tests.metrics_page import check_with_promtool

from .served import ServedBank, serve_bank, value, wait_for
from .test_metrics import assert_labels_from_fixed_sets

FAILURES = "setpay_ca_housekeeping_failures_total"
# What a worker logs when its sweep skips (``gateway.ca.authority``).
SWEEP_SKIPPED = "ca.db housekeeping skipped, ca.db busy"
# A call that sweeps waits out ca.db's busy timeout (five seconds) before it is served:
# this leaves room for a loaded machine.
CALL_TIMEOUT_SECONDS = 30


@contextmanager
def _write_locked(path: Path) -> Iterator[None]:
    """ca.db's write lock held by a connection of the test's own."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def _ask_until(bank: ServedBank, what: str, done: Callable[[], bool]) -> None:
    """Ask the CA for its BCI, each time on a new connection (the kernel hands each to
    either worker), until ``done``."""
    root = (bank.directory / "tls" / "root.pem").read_bytes()

    def asked_and_done() -> bool:
        with grpc.secure_channel(
            f"127.0.0.1:{bank.ca_port}",
            grpc.ssl_channel_credentials(root),
            options=[("grpc.use_local_subchannel_pool", 1)],
        ) as channel:
            stub = services_pb2_grpc.CertificateAuthorityServiceStub(channel)  # type: ignore[no-untyped-call]
            answer = stub.GetBrandCRLIdentifier(
                registration_pb2.GetBrandCRLIdentifierRequest(), timeout=CALL_TIMEOUT_SECONDS
            )
        assert answer.brand_crl_identifier  # served, its sweep failing or not
        time.sleep(0.1)
        return done()

    wait_for(what, asked_and_done, seconds=4 * CALL_TIMEOUT_SECONDS)


def test_a_skipped_sweep_is_counted_as_busy_on_the_page(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=2)
    try:
        # From the first scrape, at zero: an alert on increase() sees the first failure.
        samples = bank.scrape()
        for cause in ("busy", "outage", "bug"):
            assert samples.get((FAILURES, frozenset({("cause", cause)}))) == 0, cause

        config = bank.world.config
        with _write_locked(config.path(config.ca_db)):
            _ask_until(
                bank,
                # The page stays at zero if the serving process gives the sampler no CA.
                "a skipped sweep on the page (gateway.process: the CA to metrics.Sampler)",
                lambda: value(bank.scrape(), FAILURES, cause="busy") >= 1,
            )
        # One skip per worker that swept (the next try is a minute later), each logged.
        wait_for(
            "the page to count every skip logged",
            lambda: value(bank.scrape(), FAILURES, cause="busy") == bank.log().count(SWEEP_SKIPPED),
        )
        assert "SQLITE_BUSY" in bank.log()
        text = bank.scrape_text()
        samples = bank.scrape()
        assert value(samples, FAILURES, cause="busy") == bank.log().count(SWEEP_SKIPPED) >= 1
        assert value(samples, FAILURES, cause="outage") == 0
        assert value(samples, FAILURES, cause="bug") == 0
        check_with_promtool(text)
        assert_labels_from_fixed_sets(text)
    finally:
        bank.close()
