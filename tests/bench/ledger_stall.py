"""Benchmark: how long an approval waits while another request's answer signs slowly.

    .venv/bin/python tests/bench/ledger_stall.py [--stall 3] [--runs 5] [--store sqlite]

A key backend can stall (a network HSM, a token being re-initialized). Each run opens a
fresh ledger (SQLite as the gateway opens it; ``--store service`` puts the ledger
process's socket between, as ``[ledger] service = true`` does), with two card accounts.
One thread asks for an authorization the ledger declines, whose ``respond`` takes
``--stall`` seconds to sign; once that signing has begun, the main thread asks for an
unrelated approval on the other card and times it. Prints the median of ``--runs``.

While the ledger signed inside its write transaction, the approval waited for the whole
stall; since answers are signed outside (``gateway.ledger.idempotency``), it waits for
its own commit only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from gateway.cpu_turn import CpuTurn
from gateway.ledger import Ledger, LedgerKeys, LedgerStore, Outcome, SqliteLedgerStore
from gateway.ledger.remote import RemoteLedgerStore
from gateway.ledger.service import LedgerService
from setcore.pan import random_pan

EUR = 978
EXPIRY = "203012"
MERCHANT = "bench-merchant"
# Test card numbers (Luhn-valid test PANs): the stalled one and the unrelated one.
# Made as the run starts: no card number is written in the tree.
STALLED_PAN, OTHER_PAN = random_pan("411111").reveal(), random_pan("555555").reveal()


def _ask(ledger: Ledger, pan: str, amount: int, respond: object) -> bytes:
    return ledger.authorize(
        pan=pan,
        pan_expiry=EXPIRY,
        amount=amount,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=os.urandom(32),
        pi_digest=os.urandom(32),
        rrpid=os.urandom(32),
        request_digest=os.urandom(32),
        respond=respond,  # type: ignore[arg-type]
    )


def one_run(directory: Path, *, stall: float, served: bool) -> float:
    """Seconds the unrelated approval took while the decline's answer was signing."""
    sqlite = SqliteLedgerStore(directory / "ledger.db")
    service = LedgerService(sqlite, str(directory / "ledger.sock")) if served else None
    # The worker's side gets a turn to compute of its own, as in another process.
    store: LedgerStore = (
        RemoteLedgerStore(str(directory / "ledger.sock"), cpu=CpuTurn())
        if service is not None
        else sqlite
    )
    ledger = Ledger(store, LedgerKeys.generate())
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        for pan in (STALLED_PAN, OTHER_PAN):
            ledger.open_card_account(pan, EXPIRY, 10_000, EUR)
        signing = threading.Event()

        def stalled_token(outcome: Outcome) -> bytes:
            signing.set()
            time.sleep(stall)
            return b"declined, signed late"

        declined = threading.Thread(
            target=_ask, args=(ledger, STALLED_PAN, 10**9, stalled_token), daemon=True
        )
        declined.start()
        signing.wait()
        started = time.perf_counter()
        _ask(ledger, OTHER_PAN, 100, lambda outcome: b"approved")
        waited = time.perf_counter() - started
        declined.join()
        return waited
    finally:
        ledger.close()
        if service is not None:
            service.close()


def main() -> None:
    """Run and print the median wait."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stall", type=float, default=3.0, help="seconds the slow answer signs")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--store", choices=("sqlite", "service"), default="sqlite")
    args = parser.parse_args()
    waits = []
    for _ in range(args.runs):
        # Short: the service's socket lives in it.
        with tempfile.TemporaryDirectory(prefix="stall-") as tmp:
            waits.append(one_run(Path(tmp), stall=args.stall, served=args.store == "service"))
    runs = ", ".join(f"{w * 1000:.1f}" for w in waits)
    print(
        f"{args.store}: an approval while another answer signs for {args.stall:g} s waited"
        f" {statistics.median(waits) * 1000:.1f} ms (median of {args.runs}; runs: {runs})"
    )


if __name__ == "__main__":
    main()
