"""Prometheus metrics: a live scrape of a served bank, checked by promtool and against the
requests sent; and the metrics functions' label guards, in-process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics, process
from gateway.ca.watcher import WatcherCounters, valid_until
from gateway.ledger import Authorized, CommitStats, Decline, Declined
from gateway.provisioning import init_bank
from gateway.scrape import (
    SCRAPE_SECONDS,
    MultiprocessDirectory,
    ScrapeEndpoint,
    prepare_multiprocess_directory,
)
from hsm.session_pool import SessionPool
from setcore.authorization import open_auth_response
from setcore.errors import ErrorCode, PeerError
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import services_pb2

from .actors import (
    Merchant,
    World,
    auth_request,
    authorize,
    decline_left_unanswered,
    purchase,
    register_cardholder,
    register_merchant,
)
from .served import (
    WAIT_SECONDS,
    ServedBank,
    children_of,
    ledger_process_of,
    serve_bank,
    served,
    value,
    wait_for,
    workers_of,
)

# A run of 13 to 19 digits: the shape of a PAN.
PAN_SHAPE = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
PG = "setpay.v1.PaymentGatewayService"
CA = "setpay.v1.CertificateAuthorityService"
HEALTH = "grpc.health.v1.Health"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (Debian package prometheus)")
    return path


def check_with_promtool(text: str) -> None:
    """``promtool check metrics`` passes ``text`` (a scrape)."""
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


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


def assert_labels_from_fixed_sets(text: str) -> None:
    """Every label value comes from its fixed set; nothing but sample values has a PAN's
    shape (a sample value may be a long float: those are not labels)."""
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("setpay_"), family.name
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                assert not PAN_SHAPE.search(label_value), (sample.name, label)
                if label == "le":
                    continue
                assert label_value in metrics.LABEL_VALUES[label], (sample.name, label, label_value)
    for line in text.splitlines():
        without_value = line if line.startswith("#") else line.rsplit(" ", 1)[0]
        assert not PAN_SHAPE.search(without_value), line


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


def _live_gauge_files(directory: Path, pid: int) -> list[str]:
    return sorted(p.name for p in directory.glob(f"gauge_live*_{pid}.db"))


def test_dead_processes_live_gauges_leave_the_directory_and_their_counters_stay(
    tmp_path: Path,
) -> None:
    # The operator's directory, so the test can look into it (the bank's own is private).
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "counter_1.db").write_bytes(b"")  # a previous run's, to be cleaned at start
    (samples / "README").write_text("the operator's own file\n")
    env = {"SETPAY_LEDGER_SERVICE": "1", "PROMETHEUS_MULTIPROC_DIR": str(samples)}
    bank = serve_bank(tmp_path, workers=2, extra_env=env)
    try:
        assert not (samples / "counter_1.db").exists()
        assert (samples / "README").exists()
        (worker, _), (ledger,) = workers_of(bank.process.pid), ledger_process_of(bank.process.pid)
        assert _live_gauge_files(samples, worker) and _live_gauge_files(samples, ledger)
        os.kill(worker, signal.SIGKILL)
        os.kill(ledger, signal.SIGKILL)
        wait_for("both replaced", lambda: bank.log().count(" serving (pid ") == 5)
        # A live gauge of a dead process would be merged as if it still ran; its counters
        # must stay, or the totals would step back.
        assert _live_gauge_files(samples, worker) == []
        assert _live_gauge_files(samples, ledger) == []
        assert (samples / f"counter_{worker}.db").exists()
        assert bank.stop() == 0, bank.log()
    finally:
        bank.close()


def test_metrics_port_in_use_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    init_bank(tmp_path / "bank", profile="ec", env={})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "gateway", "serve",
             "--config", str(tmp_path / "bank" / "setpay.toml"), "--listen", "127.0.0.1:0",
             "--ca-listen", "127.0.0.1:0", "--workers", "1", "--metrics-port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr


# --- the supervisor's endpoint, in-process --------------------------------------------


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[ScrapeEndpoint]:
    served = ScrapeEndpoint("127.0.0.1", 0, MultiprocessDirectory(tmp_path, owned=False))
    try:
        yield served
    finally:
        served.close()


def test_a_scraper_that_trickles_its_request_holds_the_supervisor_briefly(
    endpoint: ScrapeEndpoint,
) -> None:
    # The supervisor answers scrapes in the loop that also forwards SIGTERM and restarts
    # workers: a client sending a byte now and then must not hold that loop for long.
    trickling = SCRAPE_SECONDS * 4
    done = threading.Event()
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as slow:

        def trickle() -> None:
            give_up = time.monotonic() + trickling
            while time.monotonic() < give_up and not done.wait(SCRAPE_SECONDS / 8):
                try:
                    slow.send(b"G")
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        started = time.monotonic()
        endpoint.handle()
        held = time.monotonic() - started
        done.set()
        sender.join()
    assert held < SCRAPE_SECONDS + 1.0, held
    # The loop goes on serving the next scraper.
    statuses: list[int] = []

    def fetch() -> None:
        url = f"http://127.0.0.1:{endpoint.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            statuses.append(response.status)

    client = threading.Thread(target=fetch)
    client.start()
    give_up = time.monotonic() + 10
    while client.is_alive() and time.monotonic() < give_up:
        endpoint.handle()  # as the supervisor's loop does when the socket is readable
        time.sleep(0.01)
    client.join(10)
    assert statuses == [200]


# --- in-process: the functions the bank calls ------------------------------------------


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    metrics.enable(0, registry)
    try:
        yield registry
    finally:
        metrics.disable()


def test_metrics_are_off_until_enabled() -> None:
    assert not metrics.enabled()
    metrics.rpc_finished(PG, "Authorize", 0.01, None)  # a no-op, not an error
    metrics.refused("Authorize", ErrorCode.ERROR_CODE_RRPID_REUSED)


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
    metrics.rpc_started("Evil-4999980000000000")
    metrics.rpc_finished("evil.Service", "Evil-4999980000000000", 0.002, None)
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


def test_enable_refuses_a_client_imported_without_the_multiprocess_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # This test process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR: a
    # worker in that state would write its samples nowhere the supervisor reads.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(metrics.MetricsError, match="imported before PROMETHEUS_MULTIPROC_DIR"):
        metrics.enable(0)
    assert not metrics.enabled()


@pytest.mark.parametrize("worker", [-1, metrics.MAX_WORKER_LABELS])
def test_a_worker_index_outside_the_label_set_is_refused(worker: int) -> None:
    with pytest.raises(metrics.MetricsError, match="worker index must be below 64"):
        metrics.enable(worker)
    assert not metrics.enabled()


def test_a_configured_sample_directory_that_is_not_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "samples"
    not_a_directory.write_text("")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(not_a_directory))
    with pytest.raises(metrics.MetricsError, match="PROMETHEUS_MULTIPROC_DIR is not a directory"):
        prepare_multiprocess_directory()
    assert not_a_directory.read_text() == ""


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


def test_the_sampler_starts_before_the_servers(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # create_server returns a server already serving, its health SERVING: the sampler's
    # first sample (the revocation data's end, which an alert reads) must be on the page
    # by then. Read from the order, not the page: another bank's sampler in this process
    # may have put a value there already.
    order: list[str] = []
    create_server, start = process.create_server, metrics.Sampler.start

    def serving(*args: Any, **kwargs: Any) -> Any:
        order.append("server")
        return create_server(*args, **kwargs)

    def sampling(sampler: metrics.Sampler) -> metrics.Sampler:
        order.append("sampler")
        return start(sampler)

    monkeypatch.setattr(process, "create_server", serving)
    monkeypatch.setattr(metrics.Sampler, "start", sampling)
    running = process.start_bank(ec_world.config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    running.stop(None)
    assert order == ["sampler", "server", "server"]  # the gateway's server, then the CA's


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
