"""How ``setpay gateway serve --workers N`` says that a stop cut calls in flight.

The real command runs in a subprocess, its grace period set short enough to outlast
(``SETPAY_GRACE_SECONDS``); a real authorization is held in flight by the ledger's write
lock, taken from the test as a third process, as ``test_workers`` does for a clean drain.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from .actors import auth_request, purchase, register_cardholder, register_merchant
from .served import STOP_SECONDS, ServedBank, serve_bank, value, wait_for

# Far shorter than the ledger's busy timeout (5 s), which would otherwise end the held
# calls itself, and long enough that they are seen in flight before it ends.
GRACE_SECONDS = 1.0
# The exit status the module docstring of ``gateway.workers`` documents for a stop that
# cut calls (``gateway.worker.CALLS_CUT``), written out: scripts rely on the number.
CALLS_CUT = 3


def _serve(root: Path, workers: int) -> ServedBank:
    """``served.serve_bank`` with a grace period of GRACE_SECONDS, as an operator sets it."""
    env = {"SETPAY_GRACE_SECONDS": str(GRACE_SECONDS)}
    return serve_bank(root, workers=workers, extra_env=env)


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
        said = re.compile(
            rf"WARNING .*worker (\d): {held} calls still in flight when the grace period "
            rf"\({GRACE_SECONDS} s\) ended: cut$",
            re.MULTILINE,
        )
        # The ledger's write lock, held by this process: each authorization waits for it,
        # in flight, past the grace period (SQLite's busy timeout is 5 s).
        blocker = sqlite3.connect(bank.directory / "ledger.db", timeout=10, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with ThreadPoolExecutor(max_workers=held) as pool:
                futures = [pool.submit(stub.Authorize, request, timeout=30) for request, _ in pairs]
                wait_for(
                    "the calls in flight",
                    lambda: (
                        value(bank.scrape(), "setpay_rpc_in_flight", method="Authorize") == held
                    ),
                    seconds=3,
                )
                bank.process.send_signal(signal.SIGTERM)
                for future in futures:
                    with pytest.raises(grpc.RpcError) as cut:
                        future.result(timeout=30)
                    # gRPC's words for a call its server cancels as it stops.
                    assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert cut.value.details() == "Cancelling all calls"
                # Said at the cut, before the worker closes its ledger (which commits what
                # the cut calls queued first, so the lock is let go then). Not a failure
                # yet if not: the exit status below is the first thing checked.
                with contextlib.suppress(AssertionError):
                    wait_for("the cut said", lambda: said.search(bank.log()) is not None, 4)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
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
