"""Prometheus metrics in-process: what the functions the bank calls and its sampler
record, each value in a label of its fixed set; and the checks of a page (promtool, the
label sets) that the live-page tests share."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway import metrics
from gateway.ca.watcher import WatcherCounters, valid_until
from gateway.ledger import Authorized, CommitStats, Decline, Declined
from hsm.session_pool import SessionPool
from setcore.authorization import open_auth_response
from setcore.errors import ErrorCode
from setpay.v1 import authorization_pb2 as a
from tests.cards import card
from tests.metrics_page import PAN_SHAPE, assert_labels_from

from .actors import (
    Merchant,
    World,
    auth_request,
    authorize,
    decline_left_unanswered,
    purchase,
    register_cardholder,
)

PG = "setpay.v1.PaymentGatewayService"


def assert_labels_from_fixed_sets(text: str) -> None:
    """Every label value comes from the bank's fixed sets; nothing of a PAN's shape."""
    assert_labels_from(text, metrics.LABEL_VALUES, "setpay_")


def test_decisions_and_refusals_land_in_their_labels(registry: CollectorRegistry) -> None:
    metrics.authorization_decided(Authorized("h1", "c1", 1234, 978, 0, None))
    metrics.authorization_decided(Authorized("h2", "c1", 10, 4, 0, None))  # an odd currency
    metrics.authorization_decided(Declined(Decline.EXPIRED_CARD))
    metrics.refused("Authorize", ErrorCode.ERROR_CODE_RRPID_REUSED)
    metrics.refused("Capture", ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED)
    metrics.refused("NoSuchMethod", 9999)

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert get("setpay_authorizations_total", outcome="approved", reason="none") == 2
    assert (
        get("setpay_authorizations_total", outcome="declined", reason="RESP_REASON_EXPIRED_CARD")
        == 1
    )
    assert (
        get("setpay_authorizations_total", outcome="error", reason="ERROR_CODE_RRPID_REUSED") == 1
    )
    assert get("setpay_authorized_amount_minor_units_sum", currency="EUR") == 1234
    assert get("setpay_authorized_amount_minor_units_count", currency="other") == 1
    assert get("setpay_replays_refused_total", kind="rrpid_reused") == 1
    assert get("setpay_replays_refused_total", kind="pi_reused") == 1
    assert (
        get("setpay_rpc_errors_total", method="Capture", code="ERROR_CODE_PI_PREVIOUSLY_USED") == 1
    )
    assert get("setpay_rpc_errors_total", method="other", code="other") == 1
    # A refusal of anything but Authorize is not an authorization decision.
    assert (
        get("setpay_authorizations_total", outcome="error", reason="ERROR_CODE_PI_PREVIOUSLY_USED")
        == 0
    )


def test_rpc_status_and_unknown_names_are_bounded(registry: CollectorRegistry) -> None:
    metrics.rpc_started("Authorize")
    metrics.rpc_finished(PG, "Authorize", 0.002, grpc.StatusCode.UNAVAILABLE)
    evil = f"Evil-{card('499998', 0)}"  # a card number a caller slipped into a method name
    metrics.rpc_started(evil)
    metrics.rpc_finished("evil.Service", evil, 0.002, None)
    get = registry.get_sample_value
    assert get("setpay_rpc_errors_total", {"method": "Authorize", "code": "UNAVAILABLE"}) == 1
    assert get("setpay_rpc_requests_total", {"service": "other", "method": "other"}) == 1
    assert get("setpay_rpc_in_flight", {"method": "Authorize"}) == 0
    assert get("setpay_rpc_duration_seconds_bucket", {"method": "Authorize", "le": "0.0025"}) == 1
    assert get("setpay_worker_rpcs_total", {"worker": "0"}) == 2
    assert_labels_from_fixed_sets(generate_latest(registry).decode())


def test_label_sets_are_small_and_hold_no_number_of_a_pan_shape() -> None:
    for name, allowed in metrics.LABEL_VALUES.items():
        assert metrics.OTHER in allowed and len(allowed) <= 200, name
        assert not any(PAN_SHAPE.search(v) for v in allowed), name


def test_key_and_ledger_observers(registry: CollectorRegistry) -> None:
    metrics.key_operation("sign", "ecdsa-p256-sha256", 0.001, None)
    metrics.key_operation("relogin", "", 0.05, None)
    metrics.key_operation("sign", "rsa-pss-sha256", 0.002, "TransientBackendError")
    metrics.key_operation("sign", "made-up", 0.002, "SomethingElse")
    metrics.ledger_commit(CommitStats(seconds=0.003, operations=5, retries=2))
    get = registry.get_sample_value
    assert (
        get(
            "setpay_key_operation_duration_seconds_count",
            {"op": "sign", "algorithm": "ecdsa-p256-sha256"},
        )
        == 1
    )
    assert (
        get("setpay_key_operation_duration_seconds_count", {"op": "sign", "algorithm": "other"})
        == 1
    )
    assert get("setpay_key_relogins_total") == 1
    assert get("setpay_key_errors_total", {"op": "sign", "error": "TransientBackendError"}) == 1
    assert get("setpay_key_errors_total", {"op": "sign", "error": "other"}) == 1
    assert get("setpay_ledger_commit_operations_sum") == 5
    assert get("setpay_ledger_commit_retries_total") == 2


def test_key_operations_are_told_apart_below_half_a_millisecond(
    registry: CollectorRegistry,
) -> None:
    # A software EC signature takes tens of microseconds and a SoftHSM one a fraction of a
    # millisecond: with the RPC buckets (0.5 ms first) every one fell into the first.
    labels = {"op": "sign", "algorithm": "ecdsa-p256-sha256"}
    for seconds in (0.00003, 0.00008, 0.0003):
        metrics.key_operation("sign", "ecdsa-p256-sha256", seconds, None)

    def below(le: str) -> float | None:
        return registry.get_sample_value(
            "setpay_key_operation_duration_seconds_bucket", {**labels, "le": le}
        )

    assert below("2.5e-05") == 0
    assert below("5e-05") == 1
    assert below("0.0001") == 2
    assert below("0.0005") == 3
    assert below("1.0") == 3


def test_sampler_copies_trust_and_pool_counters(
    registry: CollectorRegistry, ec_world: World, ec_merchant: Merchant
) -> None:
    class PooledKeys:
        """A key backend's pool as the PKCS#11 backend exposes it (a real SessionPool)."""

        def __init__(self) -> None:
            self.pool: SessionPool[str] = SessionPool(size=3, wait_seconds=1.0)

        @property
        def pool_stats(self):  # type: ignore[no-untyped-def]
            return self.pool.stats

    keys = PooledKeys()
    trust = ec_world.running.pki.trust
    before = trust.counters
    sampler = metrics.Sampler(trust, keys, ec_world.running.authority.watcher)
    sampler.sample()  # the first sample counts what happened before it too
    with keys.pool.lease(), keys.pool.lease():
        sampler.sample()
        assert registry.get_sample_value("setpay_key_sessions_in_use") == 2
    cardholder = register_cardholder(ec_world)
    authorize(ec_world, ec_merchant, purchase(ec_merchant, cardholder, 100))
    sampler.sample()
    after = trust.counters
    get = registry.get_sample_value
    assert get("setpay_key_sessions_in_use") == 0
    assert get("setpay_key_sessions") == 3
    assert get("setpay_key_pool_leases_total") == 2
    assert get("setpay_certificate_cache_lookups_total", {"result": "hit"}) == after.cache_hits
    assert get("setpay_certificate_cache_lookups_total", {"result": "miss"}) == after.verifications
    assert after.cache_hits + after.verifications > before.cache_hits + before.verifications
    # The bank's own revocation data: current until its BCI's or a CRL's end.
    assert trust.revocation is not None
    end = valid_until(trust.revocation).timestamp()
    assert get("setpay_revocation_valid_until_seconds") == end
    assert get("setpay_revocation_refresh_failures_total", {"step": "publish"}) == 0


def test_sampler_adds_what_the_refresh_failures_gained(
    registry: CollectorRegistry, ec_world: World
) -> None:
    class Watcher:
        """The revocation watcher's counters and end, as a refresh that fails leaves them."""

        def __init__(self) -> None:
            self.counters = WatcherCounters(publish_failures=0, install_failures=0)
            self.until: datetime | None = None

        def held_until(self) -> datetime | None:
            return self.until

    watcher = Watcher()
    sampler = metrics.Sampler(ec_world.running.pki.trust, object(), watcher)

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    # Before the first sample: the counters at zero, no end (it would read as lapsed).
    assert get("setpay_revocation_refresh_failures_total", step="publish") == 0
    assert get("setpay_revocation_refresh_failures_total", step="install") == 0
    assert get("setpay_revocation_valid_until_seconds") is None
    sampler.sample()  # none held: as lapsed as can be
    assert get("setpay_revocation_valid_until_seconds") == 0
    watcher.counters = WatcherCounters(publish_failures=2, install_failures=1)
    watcher.until = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    sampler.sample()
    sampler.sample()  # nothing gained since: nothing added
    assert get("setpay_revocation_refresh_failures_total", step="publish") == 2
    assert get("setpay_revocation_refresh_failures_total", step="install") == 1
    assert get("setpay_revocation_valid_until_seconds") == watcher.until.timestamp()


def test_served_in_process_bank_counts_its_calls(
    registry: CollectorRegistry, ec_world: World, ec_merchant: Merchant
) -> None:
    cardholder = register_cardholder(ec_world, limit=1000)
    request, state = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 2000))
    result = open_auth_response(
        ec_world.gateway.Authorize(request), ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert (
        a.AuthCode.Name(result.data.auth_res_payload.auth_header.auth_code) == "AUTH_CODE_DECLINED"
    )
    get = registry.get_sample_value
    assert get("setpay_rpc_requests_total", {"service": PG, "method": "Authorize"}) == 1
    assert (
        get(
            "setpay_authorizations_total",
            {"outcome": "declined", "reason": "RESP_REASON_INSUFFICIENT_FUNDS"},
        )
        == 1
    )


def test_a_failed_answer_is_counted_and_its_decision_counted_once_answered(
    registry: CollectorRegistry,
    ec_world: World,
    ec_merchant: Merchant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request, _, _ = decline_left_unanswered(ec_world, ec_merchant, monkeypatch)
    get = registry.get_sample_value
    assert get("setpay_answers_failed_total", {"method": "Authorize"}) == 1
    declined = {"outcome": "declined", "reason": "RESP_REASON_INSUFFICIENT_FUNDS"}
    assert get("setpay_authorizations_total", declined) == 0  # not answered yet
    assert get("setpay_rpc_errors_total", {"method": "Authorize", "code": "UNAVAILABLE"}) == 1
    ec_world.gateway.Authorize(request)  # the retry answers the decision
    assert get("setpay_authorizations_total", declined) == 1
    assert get("setpay_answers_failed_total", {"method": "Authorize"}) == 1
