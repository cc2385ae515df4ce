"""Prometheus metrics on a live page: a served bank's scrape, checked by promtool and
against the requests sent, its counters there from the first scrape, its CPU summed over
every process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics
from setcore.authorization import open_auth_response
from setcore.errors import PeerError
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import services_pb2
from tests.metrics_page import check_with_promtool, promtool

from .actors import Merchant, auth_request, purchase, register_cardholder, register_merchant
from .served import WAIT_SECONDS, ServedBank, children_of, serve_bank, served, value, wait_for
from .test_metrics import PG, assert_labels_from_fixed_sets

CA = "setpay.v1.CertificateAuthorityService"
HEALTH = "grpc.health.v1.Health"


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[ServedBank]:
    yield from served(tmp_path, workers=2)


def _code(bank: ServedBank, merchant: Merchant, pair: tuple[a.AuthorizeRequest, object]) -> str:
    request, state = pair
    response = bank.world.gateway.Authorize(request, timeout=30)
    try:
        result = open_auth_response(
            response, merchant.credentials, state, merchant.trust,  # type: ignore[arg-type]
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    except PeerError as exc:
        return exc.code_name
    return a.AuthCode.Name(result.data.auth_res_payload.auth_header.auth_code)


def test_live_scrape_passes_promtool_and_counts_what_was_sent(bank: ServedBank) -> None:
    merchant = register_merchant(bank.world, "M-metrics-1")
    rich = register_cardholder(bank.world, limit=100_000)
    poor = register_cardholder(bank.world, limit=500)
    amounts = [120, 250, 999, 40, 1500]
    codes = [
        _code(bank, merchant, auth_request(merchant, purchase(merchant, rich, n))) for n in amounts
    ]
    assert codes == ["AUTH_CODE_APPROVED"] * len(amounts)
    assert (
        _code(bank, merchant, auth_request(merchant, purchase(merchant, poor, 501)))
        == "AUTH_CODE_DECLINED"
    )
    replayed = purchase(merchant, rich, 70)
    assert _code(bank, merchant, auth_request(merchant, replayed)) == "AUTH_CODE_APPROVED"
    # The same PI in a new AuthReq: refused as a replay.
    assert (
        _code(bank, merchant, auth_request(merchant, replayed)) == "ERROR_CODE_PI_PREVIOUSLY_USED"
    )
    # The same request bytes again: the stored answer, no new decision.
    retried = auth_request(merchant, purchase(merchant, rich, 30))
    assert _code(bank, merchant, retried) == _code(bank, merchant, retried) == "AUTH_CODE_APPROVED"
    # An unparseable frame: answered with a gRPC status, not a SET Error.
    raw = bank.world.channels[0].unary_unary(
        f"/{PG}/Authorize", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.RpcError) as exc:
        raw(b"\xff\xff\xff\xff\x0f", timeout=30)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    approved = len(amounts) + 2  # the replayed purchase's first time and the retried one
    sent = len(amounts) + 1 + 2 + 2 + 1  # approvals, decline, replay pair, retry pair, frame

    wait_for(
        "the certificate cache counters",
        lambda: value(bank.scrape(), "setpay_certificate_cache_lookups_total", result="hit") > 0,
    )
    text = bank.scrape_text()
    samples = bank.scrape()

    def v(name: str, **labels: str) -> float:
        return value(samples, name, **labels)

    assert v("setpay_rpc_requests_total", service=PG, method="Authorize") == sent
    assert v("setpay_authorizations_total", outcome="approved", reason="none") == approved
    assert (
        v(
            "setpay_authorizations_total",
            outcome="declined",
            reason="RESP_REASON_INSUFFICIENT_FUNDS",
        )
        == 1
    )
    assert (
        v("setpay_authorizations_total", outcome="error", reason="ERROR_CODE_PI_PREVIOUSLY_USED")
        == 1
    )
    assert v("setpay_replays_refused_total", kind="pi_reused") == 1
    assert (
        v("setpay_rpc_errors_total", method="Authorize", code="ERROR_CODE_PI_PREVIOUSLY_USED") == 1
    )
    assert v("setpay_rpc_errors_total", method="Authorize", code="INVALID_ARGUMENT") == 1
    assert v("setpay_authorized_amount_minor_units_count", currency="EUR") == approved
    assert v("setpay_authorized_amount_minor_units_sum", currency="EUR") == sum(amounts) + 70 + 30
    assert v("setpay_rpc_duration_seconds_count", method="Authorize") == sent
    assert v("setpay_rpc_in_flight", method="Authorize") == 0
    # Approved == holds the ledger created (read from the bank's own database file).
    with sqlite3.connect(f"file:{bank.directory / 'ledger.db'}?mode=ro", uri=True) as db:
        (holds,) = db.execute("SELECT count(*) FROM holds").fetchone()
    assert holds == approved
    pending = bank.world.running.ledger.card_account(rich.account_id).pending
    assert pending == sum(amounts) + 70 + 30
    # Ledger, key backend and trust store report too.
    assert v("setpay_ledger_commit_operations_sum") >= approved + 1
    assert v("setpay_ledger_commit_duration_seconds_count") >= 1
    # Every answered AuthReq was opened (key exchange) and signed; the frame was neither.
    signs = v(
        "setpay_key_operation_duration_seconds_count", op="sign", algorithm="ecdsa-p256-sha256"
    )
    assert signs >= sent - 1
    opens = v(
        "setpay_key_operation_duration_seconds_count",
        op="decapsulate",
        algorithm="p256-hkdf-sha256",
    )
    assert opens >= sent - 1
    assert v("setpay_certificate_cache_lookups_total", result="miss") > 0
    assert v("setpay_workers") == 2
    assert sum(v("setpay_worker_rpcs_total", worker=str(i)) for i in range(2)) >= sent

    checked = subprocess.run(
        [promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_labels_from_fixed_sets(text)
    print(f"\n$ promtool check metrics < scrape  ({len(text.splitlines())} lines): OK")
    assert bank.stop() == 0, bank.log()


def _one_call_in_flight(directory: Path) -> None:
    config = directory / "setpay.toml"
    text = config.read_text()
    assert "[gateway]\n" in text
    config.write_text(text.replace("[gateway]\n", "[gateway]\nmax_concurrent_rpcs = 1\n", 1))


def test_shed_calls_are_counted_across_the_workers(tmp_path: Path) -> None:
    # One call in flight per worker: of calls sent together, on connections the kernel
    # spreads over the workers, most are shed; the page sums what each worker counted.
    # On a loaded machine the calls of a burst may reach the workers one by one and all be
    # served, so bursts go until one has calls shed (under a deadline), all counted.
    bank = serve_bank(tmp_path, workers=2, prepare=_one_call_in_flight)
    try:
        merchant = register_merchant(bank.world, "M-metrics-shed")
        holder = register_cardholder(bank.world, limit=100_000)
        stubs = [bank.channel() for _ in range(4)]
        codes: list[grpc.StatusCode] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while grpc.StatusCode.RESOURCE_EXHAUSTED not in codes:
            assert time.monotonic() < deadline, f"none of {len(codes)} calls was shed"
            burst = [auth_request(merchant, purchase(merchant, holder, 10))[0] for _ in range(24)]
            calls = [
                stubs[i % len(stubs)].Authorize.future(r, timeout=30) for i, r in enumerate(burst)
            ]
            errors = [c.exception() for c in calls]
            codes += [grpc.StatusCode.OK if e is None else e.code() for e in errors]
        shed = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert codes.count(grpc.StatusCode.OK) == len(codes) - shed
        samples = bank.scrape()
        assert value(samples, "setpay_rpc_shed_total", service=PG, method="Authorize") == shed
        # Only the handled calls are requests.
        assert value(samples, "setpay_rpc_requests_total", service=PG, method="Authorize") == (
            len(codes) - shed
        )
        text = bank.scrape_text()
        checked = subprocess.run(
            [promtool(), "check", "metrics"], input=text, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert_labels_from_fixed_sets(text)
        assert bank.stop() == 0, bank.log()
    finally:
        bank.close()


def test_a_fresh_banks_first_scrape_has_its_counters_at_zero(bank: ServedBank) -> None:
    # Nothing was asked of the bank yet. A series that appears with its first increment
    # is one increase() cannot see: the counters are there, at zero, from the start.
    text = bank.scrape_text()
    samples = bank.scrape()

    def zero(name: str, **labels: str) -> bool:
        return samples.get((name, frozenset(labels.items()))) == 0

    for service in (PG, CA):
        for method in services_pb2.DESCRIPTOR.services_by_name[service.split(".")[-1]].methods:
            assert zero("setpay_rpc_shed_total", service=service, method=method.name), method.name
            assert zero("setpay_rpc_requests_total", service=service, method=method.name)
    assert zero("setpay_authorizations_total", outcome="approved", reason="none")
    assert zero(
        "setpay_authorizations_total", outcome="declined", reason="RESP_REASON_INSUFFICIENT_FUNDS"
    )
    assert zero(
        "setpay_authorizations_total", outcome="error", reason="ERROR_CODE_PI_PREVIOUSLY_USED"
    )
    assert zero("setpay_replays_refused_total", kind="pi_reused")
    assert zero("setpay_replays_refused_total", kind="rrpid_reused")
    assert zero("setpay_answers_failed_total", method="Capture")
    assert zero("setpay_key_errors_total", op="sign", error="TransientBackendError")
    assert zero("setpay_key_errors_total", op="decapsulate", error="BackendNotAvailable")
    assert zero("setpay_revocation_refresh_failures_total", step="publish")
    assert zero("setpay_revocation_refresh_failures_total", step="install")
    for result in ("hit", "miss"):  # the bank's own chains may have been looked up already
        assert ("setpay_certificate_cache_lookups_total", frozenset({("result", result)})) in (
            samples
        )
    # The services the bank's code never handles are not made up front.
    assert not any(
        name == "setpay_rpc_shed_total" and dict(labels)["service"] == HEALTH
        for name, labels in samples
    )
    # The products of large sets are not either: errors appear with their first.
    assert not any(name == "setpay_rpc_errors_total" for name, _ in samples)
    check_with_promtool(text)
    assert_labels_from_fixed_sets(text)
    # Every family on the page is in the list the operators read.
    for family in text_string_to_metric_families(text):
        assert family.name in (metrics.__doc__ or ""), family.name
    assert bank.stop() == 0, bank.log()


def _cpu_of(pid: int) -> float:
    # This test's own reading of /proc, independent of gateway.bank_cpu: utime + stime.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_page_counts_the_cpu_of_every_process_of_the_bank(bank: ServedBank) -> None:
    merchant = register_merchant(bank.world, "M-metrics-cpu")
    holder = register_cardholder(bank.world, limit=100_000)
    for amount in (10, 20, 30):
        _code(bank, merchant, auth_request(merchant, purchase(merchant, holder, amount)))
    wait_for("two workers", lambda: len(children_of(bank.process.pid)) >= 2)
    processes = [bank.process.pid, *children_of(bank.process.pid)]
    # Read before the scrape: what the page says can only be more.
    floor = sum(_cpu_of(pid) for pid in processes)
    workers = sum(_cpu_of(pid) for pid in processes[1:])
    first = value(bank.scrape(), "setpay_bank_cpu_seconds_total")
    assert workers > 0  # the workers verified and signed: their CPU must be in the sum
    # Both are sums of whole clock ticks, added in another order: allow the float's
    # rounding (far below the one tick that would mean a process left out).
    assert first >= floor - 1e-6
    _code(bank, merchant, auth_request(merchant, purchase(merchant, holder, 40)))
    assert value(bank.scrape(), "setpay_bank_cpu_seconds_total") >= first
