"""The end of the bank's TLS server certificate: refused at start once passed, warned of
within ``TLS_EXPIRY_WARNING`` (once per bank, by the supervisor of ``setpay gateway
serve``), never a reason for a worker restarted after it to stop the bank, and on the
metrics page; with real certificates of short lifetimes from the bank's transport CA."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.bank_errors import ProvisioningError
from gateway.bank_pki import load_bank_pki, load_transport_ca
from gateway.config import load
from gateway.process import TLS_EXPIRY_WARNING, check_tls_certificate, start_bank
from gateway.provisioning import init_bank
from setcore.gateway_admin import build_pcert_request, open_pcert_response
from setcore.pki.tls import chain_not_after, issue_tls_server
from setpay.v1 import services_pb2_grpc

from .actors import TEST_BIN, Merchant, register_merchant
from .advised_commands import advised, spaced_root
from .served import START_SECONDS, Launched, ServedBank, launch, serve_bank, value, wait_for

VALID_UNTIL = "setpay_tls_certificate_valid_until_seconds"
WORKER_RPCS = "setpay_worker_rpcs_total"
# What the bank logs of a server certificate near its end, and refuses one past it with.
NEAR_END = "the TLS server certificate"
ENDED = "ended at"
# A lifetime that ends inside the warning window, and one well outside it.
SHORT = TLS_EXPIRY_WARNING / 2
LONG = TLS_EXPIRY_WARNING * 3
# Ended a minute ago (its notBefore, five minutes of clock skew back, is still earlier).
ENDED_LIFETIME = -timedelta(minutes=1)


def reissue_server_certificate(directory: Path, lifetime: timedelta) -> datetime:
    """Replace the bank's TLS server certificate and key (``setpay init``'s) by ones from
    its own transport CA that last ``lifetime``; their notAfter."""
    config = load(directory / "setpay.toml", env={})
    assert config.tls is not None
    pki = load_bank_pki(config)
    try:
        tls = issue_tls_server(load_transport_ca(config, pki.backend), lifetime=lifetime)
    finally:
        pki.close()
    config.tls.cert.write_bytes(tls.certificate_chain_pem)
    config.tls.key.write_bytes(tls.private_key_pem)
    return chain_not_after(tls.certificate_chain_pem)


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = spaced_root(tmp_path_factory.mktemp("tls-expiry")) / "bank"
    init_bank(directory, profile="ec", env={})
    return directory


def _check(bank: Path, caplog: pytest.LogCaptureFixture) -> datetime | None:
    with caplog.at_level(logging.WARNING, "setpay.gateway"):
        return check_tls_certificate(load(bank / "setpay.toml", env={}))


def test_a_certificate_far_from_its_end_passes_in_silence(
    bank: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ends = reissue_server_certificate(bank, LONG)
    assert _check(bank, caplog) == ends
    assert not [r for r in caplog.records if r.name == "setpay.gateway"]


def test_a_certificate_near_its_end_is_warned_of(
    bank: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ends = reissue_server_certificate(bank, SHORT)
    assert _check(bank, caplog) == ends
    [record] = [r for r in caplog.records if r.name == "setpay.gateway"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert NEAR_END in message and ends.strftime("%Y-%m-%dT%H:%M:%SZ") in message
    _parses_as_issue_tls(message, bank)


def _parses_as_issue_tls(advice: str, bank: Path) -> None:
    """The advice's command, between backquotes, as the real CLI reads it: this bank's
    configuration, a server certificate (HOST and DIR are for the operator to fill)."""
    args = advised(advice, bank / "setpay.toml")
    assert (args.command, args.ca_command, args.role) == ("ca", "issue-tls", "server")


def test_a_bank_refuses_to_start_on_an_ended_certificate(bank: Path) -> None:
    ends = reissue_server_certificate(bank, ENDED_LIFETIME)
    config = load(bank / "setpay.toml", env={})
    with pytest.raises(ProvisioningError, match=ENDED) as refused:
        start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    assert ends.strftime("%Y-%m-%dT%H:%M:%SZ") in str(refused.value)
    assert str(config.tls.cert if config.tls else "") in str(refused.value)
    _parses_as_issue_tls(str(refused.value), bank)


def test_the_page_shows_the_end_and_the_bank_warns_once(tmp_path: Path) -> None:
    ends: list[datetime] = []
    served = serve_bank(
        tmp_path, workers=2, prepare=lambda d: ends.append(reissue_server_certificate(d, SHORT))
    )
    try:
        # Its exact end, as the workers read it from the file they serve.
        assert value(served.scrape(), VALID_UNTIL) == ends[0].timestamp()
        # Once for the bank, by its supervisor, not once by each worker.
        warned = [line for line in served.log().splitlines() if NEAR_END in line]
        assert len(warned) == 1 and " WARNING " in warned[0], served.log()
        assert served.log().index(NEAR_END) < served.log().index("worker 0 started")
    finally:
        served.close()


def _started_pid(log: str, index: int) -> int:
    """The pid the supervisor last logged for worker ``index``'s start."""
    return int(re.findall(rf"worker {index} started \(pid (\d+)\)", log)[-1])


def _on_worker(
    bank: ServedBank, merchant: Merchant, index: int
) -> services_pb2_grpc.PaymentGatewayServiceStub:
    """A stub whose own connection worker ``index`` holds: new channels until one lands
    there. Nothing else calls the bank meanwhile, so the worker whose count grew served it;
    the kernel hashes each connection to one of two workers, so 64 all missing it has
    probability 2^-64."""
    for _ in range(64):
        before = value(bank.scrape(), WORKER_RPCS, worker=str(index))
        stub = bank.channel()
        _pcert(merchant, stub)
        if value(bank.scrape(), WORKER_RPCS, worker=str(index)) == before + 1:
            return stub
    raise AssertionError(f"64 channels and none on worker {index}")


def _pcert(merchant: Merchant, stub: services_pb2_grpc.PaymentGatewayServiceStub) -> None:
    """One PCertReq, answered and checked as the merchant checks it."""
    request, state = build_pcert_request(
        merchant.credentials, [("setpay", TEST_BIN)], merchant.merchant_id
    )
    certs = open_pcert_response(
        stub.GatewayCertificates(request, timeout=30), merchant.credentials, state, merchant.trust
    )
    assert certs.items


def test_a_worker_restarted_after_the_end_serves_and_the_bank_lives_on(tmp_path: Path) -> None:
    """Before, the replacement refused the ended certificate, and its supervisor stopped
    the bank: the open connections of the worker still serving were cut."""
    with contextlib.closing(serve_bank(spaced_root(tmp_path), workers=2)) as bank:
        merchant = register_merchant(bank.world, "M-tls-end-1")
        held = _on_worker(bank, merchant, 0)
        # The file the bank was started on now holds a certificate that has ended, as its
        # own does once its end passes while the bank serves: what a worker started from
        # now on reads is the same, with no wait for a real end.
        ended = reissue_server_certificate(bank.directory, ENDED_LIFETIME)
        victim = _started_pid(bank.log(), 1)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            "the replacement serving, or the bank gone",
            lambda: bank.log().count(" serving (pid ") == 3 or bank.process.poll() is not None,
            seconds=START_SECONDS,
        )
        log = bank.log()
        assert bank.process.poll() is None, log
        assert "stopping the bank" not in log
        assert _started_pid(log, 1) != victim
        # The replacement says why new handshakes with it fail, and what to issue.
        [said] = [line for line in log.splitlines() if ENDED in line]
        assert " WARNING " in said and ended.strftime("%Y-%m-%dT%H:%M:%SZ") in said, log
        _parses_as_issue_tls(said, bank.directory)
        # The connection worker 0 held before the end still gets its answers.
        _pcert(merchant, held)
        # The earliest end a live worker serves: the replacement's.
        assert value(bank.scrape(), VALID_UNTIL) == ended.timestamp()
        assert bank.stop() == 0, bank.log()


def _ended(directory: Path) -> None:
    reissue_server_certificate(directory, ENDED_LIFETIME)


def _refused_start(root: Path, prepare: Callable[[Path], None]) -> Launched:
    """``setpay gateway serve`` on a bank that ``prepare`` spoiled, once it has exited 1
    on its own (killed if it has not within ``START_SECONDS``)."""
    started = launch(root, workers=1, prepare=prepare)
    try:
        code = started.process.wait(timeout=START_SECONDS)
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(timeout=START_SECONDS)
    assert code == 1
    return started


def test_setpay_gateway_serve_refuses_an_ended_certificate(tmp_path: Path) -> None:
    started = _refused_start(tmp_path, _ended)
    log = started.log()
    # Refused by the supervisor before it forks: no worker started only to be stopped.
    assert "setpay gateway: the TLS server certificate" in log, log
    assert ENDED in log and not started.ports.exists()
    assert " started (pid " not in log and "cannot serve" not in log, log


def _cert_missing(directory: Path) -> None:
    config = load(directory / "setpay.toml", env={})
    assert config.tls is not None
    config.tls.cert.unlink()


def test_setpay_gateway_serve_names_a_missing_certificate_file(tmp_path: Path) -> None:
    """The supervisor reads the certificate first, before any worker: a path that names
    no file (a typo in [gateway.tls]) is said in one line, not a traceback."""
    started = _refused_start(tmp_path, _cert_missing)
    log = started.log()
    assert "setpay gateway: TLS server certificate" in log, log
    assert "cannot read it (No such file or directory)" in log, log
    assert "Traceback" not in log and not started.ports.exists(), log
