"""How ``setpay gateway serve --workers N`` says that a stop cut calls in flight.

The real command runs in a subprocess, its grace period set short enough to outlast
(``SETPAY_GRACE_SECONDS``); real calls are held in flight by the ledger's write lock,
taken from the test as a third process, as ``test_workers`` does for a clean drain: an
authorization waits for it to record its hold, a merchant's certificate request to open
the merchant's account. The bank's ledger waits for that lock as long as the test holds
it (``patient_ledger_serve``), so no busy timeout ends a held call before the stop cuts
it, whatever the grace period and however loaded the machine.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from hsm.base import KeyUsage
from setcore.registration_merchant import (
    MerchantIdentity,
    build_me_aq_c_init_request,
    build_merchant_cert_request,
    open_me_aq_c_init_response,
)
from setpay.v1 import registration_pb2

from .actors import (
    MER_INITIAL,
    World,
    auth_request,
    purchase,
    register_cardholder,
    register_merchant,
)
from .served import STOP_SECONDS, ServedBank, serve_bank, value, wait_for

# Short, so that the test does not wait long for the cut; the held calls stay held
# however long the machine takes to see them in flight and signal the bank.
GRACE_SECONDS = 1.0
# The exit status the module docstring of ``gateway.workers`` documents for a stop that
# cut calls (``gateway.worker.CALLS_CUT``), written out: scripts rely on the number.
CALLS_CUT = 3
# The bank's ledger waits for the test's lock far longer than this (patient_ledger_serve).
PATIENT_SERVE = ("tests.gateway.patient_ledger_serve",)


def _serve(root: Path, workers: int) -> ServedBank:
    """``served.serve_bank`` with a grace period of GRACE_SECONDS, as an operator sets it,
    and a patient ledger."""
    env = {"SETPAY_GRACE_SECONDS": str(GRACE_SECONDS)}
    return serve_bank(root, workers=workers, extra_env=env, command=PATIENT_SERVE)


@contextmanager
def _ledger_locked(bank: ServedBank) -> Iterator[None]:
    """The ledger's write lock, held by this process until the block ends."""
    blocker = sqlite3.connect(bank.directory / "ledger.db", timeout=30, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()


def _said(count: int) -> re.Pattern[str]:
    """The worker's WARNING that it cut ``count`` calls (which worker: the group)."""
    return re.compile(
        rf"WARNING .*worker (\d): {count} calls still in flight when the grace period "
        rf"\({GRACE_SECONDS} s\) ended: cut$",
        re.MULTILINE,
    )


def _in_flight(bank: ServedBank, **expected: int) -> None:
    """Wait until the metrics show ``expected`` calls in flight, by method."""
    wait_for(
        f"the calls in flight ({expected})",
        lambda: all(
            value(bank.scrape(), "setpay_rpc_in_flight", method=method) == count
            for method, count in expected.items()
        ),
    )


def _cut(futures: Sequence[Future[Any]]) -> None:
    """Each call ended as gRPC ends a call its server cancels as it stops."""
    for future in futures:
        with pytest.raises(grpc.RpcError) as cut:
            future.result(timeout=STOP_SECONDS)
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
        assert cut.value.details() == "Cancelling all calls"


def test_a_stop_that_cuts_calls_says_so_and_exits_calls_cut(tmp_path: Path) -> None:
    bank = _serve(tmp_path, workers=2)
    try:
        merchant = register_merchant(bank.world, "M-cut-1")
        cardholder = register_cardholder(bank.world, limit=100_000)
        # One channel, one connection: every held call is on the same worker; the other
        # has none and drains cleanly, so one worker alone decides the bank's status.
        stub = bank.channel()
        held = 2
        pairs = [auth_request(merchant, purchase(merchant, cardholder, 100)) for _ in range(held)]
        said = _said(held)
        with _ledger_locked(bank), ThreadPoolExecutor(max_workers=held) as pool:
            futures = [
                pool.submit(stub.Authorize, request, timeout=STOP_SECONDS) for request, _ in pairs
            ]
            _in_flight(bank, Authorize=held)
            bank.process.send_signal(signal.SIGTERM)
            _cut(futures)
            # Said at the cut, before the worker closes its ledger, which first commits
            # what the cut calls queued, and so waits for the lock held here.
            wait_for("the cut said", lambda: said.search(bank.log()) is not None)
        status = bank.process.wait(timeout=STOP_SECONDS)
        log = bank.log()
        assert status == CALLS_CUT, log
        # The worker says how many, at WARNING; the supervisor which worker.
        found = said.findall(log)
        assert len(found) == 1, found
        assert re.search(rf"WARNING .*worker {found[0]} \(pid \d+\) stopped, but cut calls", log)
        assert len(re.findall(r"worker \d \(pid \d+\) stopped$", log, re.MULTILINE)) == 1
        assert "did not stop" not in log and " ERROR " not in log, log
    finally:
        bank.close()


def _merchant_cert_request(world: World, merchant_id: str) -> registration_pb2.CertRequest:
    """A merchant's CertReq, its Me-AqCInit answered: the CA opens the merchant's ledger
    account in the transaction that issues its certificates."""
    trust = world.trust()
    identity = MerchantIdentity(merchant_id, f"Shop {merchant_id}")
    request, state = build_me_aq_c_init_request(MER_INITIAL, identity, "setpay", os.urandom(8))
    registration = open_me_aq_c_init_response(world.ca.MeAqCInit(request), state, trust)
    sig, kex = world.key(KeyUsage.SIGNATURE), world.key(KeyUsage.KEY_EXCHANGE)
    cert_request, _ = build_merchant_cert_request(world.keys, sig, kex, registration, state)
    return cert_request


def test_calls_cut_on_both_servers_are_all_counted(tmp_path: Path) -> None:
    """An authorization on the PaymentGateway's server and a certificate request on the
    CA's, both held past the grace period of one worker: both are counted. Before, the
    wait for the first server's stop outlasted the second one's cut, which then read as
    a clean stop: the worker said 1."""
    bank = _serve(tmp_path, workers=1)
    try:
        merchant = register_merchant(bank.world, "M-cut-2")
        cardholder = register_cardholder(bank.world, limit=100_000)
        authorization, _ = auth_request(merchant, purchase(merchant, cardholder, 100))
        registration = _merchant_cert_request(bank.world, "M-cut-3")
        stub = bank.channel()
        with _ledger_locked(bank), ThreadPoolExecutor(max_workers=2) as pool:
            futures = [
                pool.submit(stub.Authorize, authorization, timeout=STOP_SECONDS),
                pool.submit(bank.world.ca.Cert, registration, timeout=STOP_SECONDS),
            ]
            _in_flight(bank, Authorize=1, Cert=1)
            bank.process.send_signal(signal.SIGTERM)
            _cut(futures)
            wait_for("the cut said", lambda: "still in flight when the grace" in bank.log())
        status = bank.process.wait(timeout=STOP_SECONDS)
        log = bank.log()
        assert status == CALLS_CUT, log
        assert _said(2).search(log) is not None, log
        assert "did not stop" not in log and " ERROR " not in log, log
    finally:
        bank.close()
