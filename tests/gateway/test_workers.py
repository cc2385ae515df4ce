"""``setpay gateway serve --workers N``: forked workers on one port, supervised, drained.

Each test runs the real command in a subprocess (``served.py``) and talks to it over real
mutual TLS with the actors of ``actors.py``; the ledger is the bank's SQLite file, opened
from the test as a third process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.config import ConfigError, default_workers, load
from gateway.ports import PortError, reserve, write_port_file
from gateway.restarts import RestartBudget
from setcore.authorization import open_auth_response
from setcore.gateway_admin import build_pcert_request, open_pcert_response
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import services_pb2_grpc
from tests.hsm.testbed import SoftHsm, session_softhsm

from .actors import (
    TEST_BIN,
    Merchant,
    auth_request,
    purchase,
    register_cardholder,
    register_merchant,
)
from .served import (
    ServedBank,
    ledger_process_of,
    mapped_files,
    serve_bank,
    served,
    threads_of,
    value,
    wait_for,
    workers_of,
)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ServedBank]:
    yield from served(tmp_path, workers=2)


# The SQLite ledger written by a writer thread in each worker taking turns at the file
# (the default), or by one ledger process for every worker.
LEDGER_MODES = {"ledger-process": "1", "writer-per-worker": "0"}


@pytest.fixture(params=sorted(LEDGER_MODES))
def two_workers_either_ledger(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ServedBank]:
    env = {"SETPAY_LEDGER_SERVICE": LEDGER_MODES[request.param]}
    yield from served(tmp_path, workers=2, extra_env=env)


@pytest.fixture(params=sorted(LEDGER_MODES))
def patient_two_workers_either_ledger(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ServedBank]:
    """``two_workers_either_ledger`` whose ledger waits for a write lock the test holds as
    long as it is held (``patient_ledger_serve``), not the bank's 5 s busy timeout."""
    env = {"SETPAY_LEDGER_SERVICE": LEDGER_MODES[request.param]}
    command = ("tests.gateway.patient_ledger_serve",)
    yield from served(tmp_path, workers=2, extra_env=env, command=command)


def _uses_ledger_process(bank: ServedBank) -> bool:
    return "ledger process serving" in bank.log()


def _pcert(
    bank: ServedBank, merchant: Merchant, stub: services_pb2_grpc.PaymentGatewayServiceStub
) -> None:
    """One PCertReq on ``stub``, checked as the merchant checks it."""
    request, state = build_pcert_request(
        merchant.credentials, [("setpay", TEST_BIN)], merchant.merchant_id
    )
    certs = open_pcert_response(
        stub.GatewayCertificates(request, timeout=30), merchant.credentials, state, merchant.trust
    )
    assert certs.items


def _auth_code(
    stub: services_pb2_grpc.PaymentGatewayServiceStub,
    merchant: Merchant,
    pair: tuple[a.AuthorizeRequest, object],
) -> str:
    request, state = pair
    response = stub.Authorize(request, timeout=30)
    result = open_auth_response(
        response, merchant.credentials, state, merchant.trust,  # type: ignore[arg-type]
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    return a.AuthCode.Name(result.data.auth_res_payload.auth_header.auth_code)


def _per_worker(bank: ServedBank, workers: int) -> list[float]:
    samples = bank.scrape()
    return [value(samples, "setpay_worker_rpcs_total", worker=str(i)) for i in range(workers)]


def _stubs_on_every_worker(
    bank: ServedBank, merchant: Merchant, workers: int
) -> list[services_pb2_grpc.PaymentGatewayServiceStub]:
    """New channels until every worker holds one; one stub per worker, in worker order.

    Nothing else calls the bank meanwhile, so the worker whose count grew by one served
    the new channel. The kernel hashes each connection to a worker: 64 channels all
    landing on one of two workers has probability 2^-63.
    """
    found: dict[int, services_pb2_grpc.PaymentGatewayServiceStub] = {}
    before = _per_worker(bank, workers)
    for _ in range(64):
        stub = bank.channel()
        _pcert(bank, merchant, stub)
        after = _per_worker(bank, workers)
        grew = [i for i in range(workers) if after[i] != before[i]]
        assert len(grew) == 1 and after[grew[0]] == before[grew[0]] + 1, (before, after)
        found.setdefault(grew[0], stub)
        before = after
        if len(found) == workers:
            return [found[i] for i in range(workers)]
    raise AssertionError(f"64 channels and still a worker without one: {sorted(found)}")


def test_two_workers_both_serve_and_lose_no_update(two_workers_either_ledger: ServedBank) -> None:
    bank = two_workers_either_ledger
    merchant = register_merchant(bank.world, "M-workers-1")
    stubs = _stubs_on_every_worker(bank, merchant, workers=2)
    # One card, 16 racers for 10 affordable holds, spread over connections to both
    # workers: both write the same SQLite file, through the ledger process or each with
    # a writer of its own.
    affordable, amount, racers = 10, 100, 16
    cardholder = register_cardholder(bank.world, limit=affordable * amount)
    pairs = [auth_request(merchant, purchase(merchant, cardholder, amount)) for _ in range(racers)]
    with ThreadPoolExecutor(max_workers=racers) as pool:
        codes = list(
            pool.map(lambda i: _auth_code(stubs[i % len(stubs)], merchant, pairs[i]), range(racers))
        )
    assert codes.count("AUTH_CODE_APPROVED") == affordable
    assert codes.count("AUTH_CODE_DECLINED") == racers - affordable
    ledger = bank.world.running.ledger
    account = ledger.card_account(cardholder.account_id)
    assert (account.pending, account.available) == (affordable * amount, 0)
    ledger.check_balanced()
    # Whoever commits reports it (the ledger process, when there is one): every decision
    # was carried by a counted commit.
    samples = bank.scrape()
    assert value(samples, "setpay_ledger_commit_operations_sum") >= racers
    assert value(samples, "setpay_ledger_commit_operations_count") >= 1
    # The supervisor never started gRPC (its core runs threads) nor anything else threaded.
    assert threads_of(bank.process.pid) == 1
    # Every thread of every worker (gRPC's, the ledger writer) and of the ledger process
    # runs under SCHED_BATCH, the configured default; the supervisor keeps the normal policy.
    workers = workers_of(bank.process.pid)
    assert len(workers) == 2
    ledger_process = ledger_process_of(bank.process.pid)
    assert len(ledger_process) == (1 if _uses_ledger_process(bank) else 0)
    for process in workers + ledger_process:
        tids = [int(t.name) for t in Path(f"/proc/{process}/task").iterdir()]
        assert len(tids) > (5 if process in workers else 2)  # gRPC's; the writer and loop
        assert {os.sched_getscheduler(tid) for tid in tids} == {os.SCHED_BATCH}
    assert os.sched_getscheduler(bank.process.pid) == os.SCHED_OTHER
    assert bank.stop() == 0, bank.log()


def test_sigterm_lets_calls_in_flight_finish(
    patient_two_workers_either_ledger: ServedBank,
) -> None:
    bank = patient_two_workers_either_ledger
    merchant = register_merchant(bank.world, "M-drain-1")
    stubs = _stubs_on_every_worker(bank, merchant, workers=2)
    cardholder = register_cardholder(bank.world, limit=100_000)
    in_flight = 6
    pairs = [auth_request(merchant, purchase(merchant, cardholder, 100)) for _ in range(in_flight)]
    # Hold the ledger's write lock from this process: every authorization then waits for
    # the ledger's writer, in flight, until we let go (a patient ledger: however long a
    # loaded machine takes to see them in flight and to signal the bank, none times out).
    blocker = sqlite3.connect(bank.directory / "ledger.db", timeout=10, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    released = False
    try:
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            futures = [
                pool.submit(_auth_code, stubs[i % len(stubs)], merchant, pairs[i])
                for i in range(in_flight)
            ]
            wait_for(
                "every call in flight",
                lambda: (
                    value(bank.scrape(), "setpay_rpc_in_flight", method="Authorize") == in_flight
                ),
            )
            bank.process.send_signal(signal.SIGTERM)
            # Each worker says it is NOT_SERVING, then draining, once it stops.
            wait_for(
                "both workers draining",
                lambda: bank.log().count(": stop signal received; NOT_SERVING") >= 2,
            )
            blocker.execute("ROLLBACK")
            released = True
            codes = [f.result(timeout=30) for f in futures]
    finally:
        if not released:
            blocker.execute("ROLLBACK")
        blocker.close()
    assert codes == ["AUTH_CODE_APPROVED"] * in_flight
    assert bank.process.wait(timeout=60) == 0, bank.log()
    assert bank.world.running.ledger.card_account(cardholder.account_id).pending == 100 * in_flight
    log = bank.log()
    assert "worker 0 (pid" in log and "worker 1 (pid" in log
    assert len(re.findall(r"worker \d \(pid \d+\) stopped", log)) == 2
    if _uses_ledger_process(bank):
        # Stopped last, once no worker could still need it.
        stops = [line for line in log.splitlines() if ") stopped" in line]
        assert len(stops) == 3 and "ledger process (pid" in stops[-1], stops


def test_a_killed_worker_is_reported_and_replaced(two_workers: ServedBank) -> None:
    bank = two_workers
    merchant = register_merchant(bank.world, "M-restart-1")
    wait_for("two workers", lambda: len(workers_of(bank.process.pid)) == 2)
    victim, survivor = workers_of(bank.process.pid)
    cpu_before = value(bank.scrape(), "setpay_bank_cpu_seconds_total")
    os.kill(victim, signal.SIGKILL)
    wait_for(
        "the replacement", lambda: len(set(workers_of(bank.process.pid)) - {victim, survivor}) == 1
    )
    wait_for("the replacement serving", lambda: bank.log().count(" serving (pid ") == 3)
    log = bank.log()
    assert f"(pid {victim}) died: signal SIGKILL" in log
    assert "restarted" in log
    stubs = _stubs_on_every_worker(bank, merchant, workers=2)
    assert stubs
    samples = bank.scrape()
    assert value(samples, "setpay_worker_restarts_total") == 1
    assert value(samples, "setpay_workers") == 2
    # The dead worker's CPU stays counted (the supervisor reaped it): no step back.
    assert value(samples, "setpay_bank_cpu_seconds_total") >= cpu_before > 0
    assert bank.stop() == 0, bank.log()


def test_a_killed_ledger_process_is_replaced_and_workers_reconnect(tmp_path: Path) -> None:
    with contextlib.closing(
        serve_bank(tmp_path, workers=2, extra_env={"SETPAY_LEDGER_SERVICE": "1"})
    ) as bank:
        _ledger_process_restart(bank)


def _ledger_process_restart(bank: ServedBank) -> None:
    merchant = register_merchant(bank.world, "M-ledger-restart-1")
    cardholder = register_cardholder(bank.world, limit=100_000)
    stubs = _stubs_on_every_worker(bank, merchant, workers=2)
    for stub in stubs:  # every worker holds connections to the ledger process now
        assert (
            _auth_code(stub, merchant, auth_request(merchant, purchase(merchant, cardholder, 100)))
            == "AUTH_CODE_APPROVED"
        )
    (victim,) = ledger_process_of(bank.process.pid)
    os.kill(victim, signal.SIGKILL)
    wait_for(
        "a new ledger process", lambda: ledger_process_of(bank.process.pid) not in ([], [victim])
    )
    wait_for(
        "the new ledger process serving",
        lambda: bank.log().count("ledger process serving (pid") == 2,
    )
    log = bank.log()
    assert f"the ledger process (pid {victim}) died: signal SIGKILL" in log
    assert "ledger process restarted" in log
    # Each worker finds its old connections closed when it sends, and dials again.
    for stub in stubs:
        pair = auth_request(merchant, purchase(merchant, cardholder, 100))
        assert _auth_code(stub, merchant, pair) == "AUTH_CODE_APPROVED"
    account = bank.world.running.ledger.card_account(cardholder.account_id)
    assert account.pending == 100 * 4
    assert len(workers_of(bank.process.pid)) == 2  # the workers were not restarted
    assert bank.stop() == 0, bank.log()


def _break_ledger_keys(directory: Path) -> None:
    (directory / "ledger.keys").chmod(0o644)  # the ledger refuses a key file others can read


def test_a_worker_that_cannot_start_stops_the_bank(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="did not start") as failed:
        serve_bank(tmp_path, workers=2, metrics=False, prepare=_break_ledger_keys)
    log = str(failed.value)
    assert "stopping the bank: a worker failed to start" in log
    # The operator's problem in one line, not a stack trace.
    assert re.search(r"worker \d cannot serve: BankIncomplete: .*ledger.keys must be", log)
    assert "Traceback" not in log


def test_a_replacement_that_cannot_start_is_not_retried(two_workers: ServedBank) -> None:
    bank = two_workers
    wait_for("two workers", lambda: len(workers_of(bank.process.pid)) == 2)
    _break_ledger_keys(bank.directory)
    os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)
    assert bank.process.wait(timeout=60) == 1
    log = bank.log()
    assert log.count(" started (pid ") == 3  # two, then one replacement, no more
    assert "stopping the bank: a worker failed to start" in log


def test_sigint_stops_the_bank_too(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=1, metrics=False)
    try:
        assert bank.stop(signal.SIGINT) == 0, bank.log()
    finally:
        bank.close()


def test_workers_on_a_pkcs11_token_each_log_in_after_fork(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    softhsm: SoftHsm = session_softhsm(tmp_path_factory)
    token = softhsm.init_token()
    bank = serve_bank(tmp_path, workers=2, keys=token.uri())
    try:
        merchant = register_merchant(bank.world, "M-token-1")
        stubs = _stubs_on_every_worker(bank, merchant, workers=2)
        cardholder = register_cardholder(bank.world)
        pair = auth_request(merchant, purchase(merchant, cardholder, 250))
        assert _auth_code(stubs[0], merchant, pair) == "AUTH_CODE_APPROVED"

        def pool_sampled() -> bool:
            return value(bank.scrape(), "setpay_key_pool_leases_total") > 0

        wait_for("the pool metrics", pool_sampled)
        samples = bank.scrape()
        # One login per worker, each after its fork; none before (the supervisor has none).
        logins = value(
            samples, "setpay_key_operation_duration_seconds_count", op="login", algorithm="none"
        )
        assert logins == 2
        assert value(samples, "setpay_key_relogins_total") == 0
        signs = value(
            samples,
            "setpay_key_operation_duration_seconds_count",
            op="sign",
            algorithm="ecdsa-p256-sha256",
        )
        assert signs >= 3  # two PCertRes and one AuthRes at least
        assert value(samples, "setpay_key_sessions") > 0
        # PKCS#11 was initialized in the workers only: the supervisor never loaded SoftHSM.
        assert "libsofthsm2" not in mapped_files(bank.process.pid)
        workers = workers_of(bank.process.pid)
        assert len(workers) == 2, workers  # all() of no worker would hold too
        assert all("libsofthsm2" in mapped_files(w) for w in workers)
        assert bank.stop() == 0, bank.log()
    finally:
        bank.close()


def test_reserve_turns_port_zero_into_a_port_the_workers_can_share() -> None:
    reserved = reserve("127.0.0.1:0")
    try:
        assert reserved.port > 0 and reserved.address == f"127.0.0.1:{reserved.port}"
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", reserved.port))
            worker.listen()
    finally:
        reserved.close()


def test_reserve_refuses_an_address_someone_holds() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(PortError, match=f"cannot reserve 127.0.0.1:{port}"):
            reserve(f"127.0.0.1:{port}")


def test_two_banks_never_share_a_port() -> None:
    first = reserve("127.0.0.1:0")
    try:
        with pytest.raises(PortError, match="Address already in use"):
            reserve(first.address)
    finally:
        first.close()


def test_port_file_appears_whole_never_half_written(tmp_path: Path) -> None:
    # A script polls for the file and reads it at once: written in place, it was
    # sometimes found empty (a test failed reading no ports). It is renamed into place.
    path = tmp_path / "ports"
    path.write_text("stale\n")
    stale = path.stat().st_ino
    write_port_file(path, 7443, 7444)
    assert path.read_text() == "7443 7444\n"
    assert path.stat().st_ino != stale  # a new file renamed over the old one
    assert [entry.name for entry in tmp_path.iterdir()] == ["ports"]  # no staging file left


def test_restart_budget_allows_a_few_restarts_per_window() -> None:
    now = [0.0]
    budget = RestartBudget(limit=2, window_seconds=60.0, clock=lambda: now[0])
    assert budget.take() and budget.take()
    assert not budget.take()
    now[0] = 59.0
    assert not budget.take()
    now[0] = 60.0  # both earlier restarts are a full window old
    assert budget.take() and budget.take()
    assert not budget.take()


def test_worker_count_comes_from_file_environment_or_cpus(tmp_path: Path) -> None:
    path = tmp_path / "setpay.toml"
    path.write_text("[gateway]\ninsecure = true\n")
    assert load(path, env={}).workers == default_workers() >= 1
    assert load(path, env={"SETPAY_WORKERS": "3"}).workers == 3
    assert load(path, env={"SETPAY_THREADS": "16"}).threads == 16
    path.write_text("[gateway]\ninsecure = true\nworkers = 2\nmetrics_port = 9464\n")
    config = load(path, env={"SETPAY_METRICS_HOST": "::1"})
    assert (config.workers, config.metrics_port, config.metrics_host) == (2, 9464, "::1")
    with pytest.raises(ConfigError, match="workers must be between 1 and 64"):
        load(path, env={"SETPAY_WORKERS": "0"})
    with pytest.raises(ConfigError, match="metrics_port must be between 0"):
        load(path, env={"SETPAY_METRICS_PORT": "70000"})


@pytest.mark.parametrize("expiry", [0, -1, 30 * 24 * 3600 * 1000 + 1])
def test_a_hold_expiry_the_ledger_would_refuse_is_refused_at_load(
    tmp_path: Path, expiry: int
) -> None:
    path = tmp_path / "setpay.toml"
    path.write_text(f"[gateway]\ninsecure = true\n[ledger]\nhold_expiry_ms = {expiry}\n")
    with pytest.raises(ConfigError, match=r"ledger\.hold_expiry_ms must be between 1 and"):
        load(path, env={})
    path.write_text("[gateway]\ninsecure = true\n[ledger]\nhold_expiry_ms = 86400000\n")
    assert load(path, env={}).hold_expiry_ms == 86_400_000


def test_scheduling_policy_is_batch_unless_configured(tmp_path: Path) -> None:
    path = tmp_path / "setpay.toml"
    path.write_text("[gateway]\ninsecure = true\n")
    assert load(path, env={}).scheduling == "batch"
    assert load(path, env={"SETPAY_SCHEDULING": "normal"}).scheduling == "normal"
    path.write_text('[gateway]\ninsecure = true\nscheduling = "realtime"\n')
    with pytest.raises(ConfigError, match="scheduling must be one of batch, normal"):
        load(path, env={})


def test_the_ledger_process_is_chosen_by_file_or_environment_for_sqlite_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "setpay.toml"
    path.write_text("[gateway]\ninsecure = true\n")
    assert not load(path, env={}).uses_ledger_service()  # off unless asked for
    assert load(path, env={"SETPAY_LEDGER_SERVICE": "1"}).uses_ledger_service()
    path.write_text("[gateway]\ninsecure = true\n[ledger]\nservice = true\n")
    assert load(path, env={}).uses_ledger_service()
    assert not load(path, env={"SETPAY_LEDGER_SERVICE": "0"}).uses_ledger_service()
    # PostgreSQL is a server already: every worker connects to it.
    postgres = {"SETPAY_LEDGER": "postgresql://bank@localhost/ledger"}
    assert not load(path, env=postgres).uses_ledger_service()
    with pytest.raises(ConfigError, match="SETPAY_LEDGER_SERVICE must be one of 0, 1"):
        load(path, env={"SETPAY_LEDGER_SERVICE": "sometimes"})  # not quietly "off"
    path.write_text("[gateway]\ninsecure = true\n[ledger]\nservice = 'yes'\n")
    with pytest.raises(ConfigError, match="service must be bool"):
        load(path, env={})
