"""Benchmark: SQLite ledger authorizations per second, group commit vs one commit per op.

    .venv/bin/python tests/bench/ledger_commit.py [--threads 32] [--ops 4000] [--runs 3]

Each run opens a fresh SQLite ledger (WAL, synchronous=FULL) in a temporary directory,
opens a merchant and a few card accounts with limits no run can exhaust, then lets
``--threads`` threads authorize ``--ops`` times in all. Every authorization's response is
built the way the gateway builds one, in the calling thread before the ledger is asked
(``PrebuiltApproval``): an ECDSA P-256 signature over the expected approval, sealed
with AES-256-GCM (``--respond none`` drops that work to see the store alone). The two
modes differ only in GroupCommitConfig.max_operations: 64 (the default) or 1. Prints the
median of ``--runs`` runs for each mode, and the mean operations per commit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.ledger import (
    Authorized,
    CommitStats,
    GroupCommitConfig,
    Ledger,
    LedgerKeys,
    Outcome,
    PrebuiltApproval,
    SqliteLedgerStore,
    SqliteStoreConfig,
    new_hold_id,
)
from setcore.pan import random_pan

# Test card numbers, one per card account of the benchmark, made as the run starts under
# the brands' test BINs: no card number is written in the tree.
PANS = tuple(random_pan(bin_).reveal() for bin_ in ("411111", "555555", "401288", "424242"))
EUR = 978
MERCHANT = "bench-merchant"


def signing_responder() -> Callable[[Outcome], bytes]:
    """A respond that signs and seals like the gateway: ECDSA P-256 and AES-256-GCM."""
    key = ec.generate_private_key(ec.SECP256R1())
    aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def respond(outcome: Outcome) -> bytes:
        body = repr(outcome).encode()
        signature = key.sign(body, ec.ECDSA(hashes.SHA256()))
        nonce = os.urandom(12)
        return nonce + aead.encrypt(nonce, body + signature, b"setpay.v1.bench")

    return respond


def respond_cost_us(respond: Callable[[Outcome], bytes], samples: int = 2000) -> float:
    """Mean microseconds of one respond call."""
    from gateway.ledger import Decline, Declined

    outcome = Declined(Decline.INSUFFICIENT_FUNDS)
    started = time.perf_counter()
    for _ in range(samples):
        respond(outcome)
    return (time.perf_counter() - started) / samples * 1e6


def one_run(
    directory: Path, *, group: int, threads: int, ops: int, respond: Callable[[Outcome], bytes]
) -> tuple[float, float]:
    """Authorizations per second and mean operations per commit of one run."""
    commits: list[CommitStats] = []
    config = SqliteStoreConfig(group_commit=GroupCommitConfig(max_operations=group))
    store = SqliteLedgerStore(directory / "ledger.db", config=config, observer=commits.append)
    ledger = Ledger(store, LedgerKeys.generate())
    ledger.open_merchant_account(MERCHANT, EUR)
    for pan in PANS:
        ledger.open_card_account(pan, "203012", 10**12, EUR)
    commits.clear()
    start = threading.Barrier(threads)

    def worker(w: int) -> None:
        start.wait()
        for i in range(w, ops, threads):
            hold_id = new_hold_id()
            expected = Authorized(hold_id, "", 100, EUR, 0, None)
            ledger.authorize(
                pan=PANS[i % len(PANS)],
                pan_expiry="203012",
                amount=100,
                currency=EUR,
                merchant_id=MERCHANT,
                xid=i.to_bytes(8, "big") + os.urandom(24),
                pi_digest=os.urandom(32),
                rrpid=os.urandom(32),
                request_digest=os.urandom(32),
                respond=respond,
                hold_id=hold_id,
                prebuilt=PrebuiltApproval(hold_id, 100, EUR, respond(expected)),
            )

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(worker, range(threads)))
    elapsed = time.perf_counter() - started
    ledger.check_balanced()
    ledger.close()
    per_commit = sum(c.operations for c in commits) / max(1, len(commits))
    return ops / elapsed, per_commit


def main() -> None:
    """Run both modes and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--ops", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--respond", choices=("sign", "none"), default="sign")
    args = parser.parse_args()
    respond = signing_responder() if args.respond == "sign" else (lambda outcome: b"ok")
    print(f"respond: {args.respond}, {respond_cost_us(respond):.1f} us per call")
    print(f"{args.threads} threads, {args.ops} authorizations per run, median of {args.runs}")
    results: dict[str, float] = {}
    for label, group in (("group commit (<= 64 ops)", 64), ("one commit per op", 1)):
        rates, sizes = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="setpay-bench-") as tmp:
                rate, size = one_run(
                    Path(tmp), group=group, threads=args.threads, ops=args.ops, respond=respond
                )
            rates.append(rate)
            sizes.append(size)
        results[label] = statistics.median(rates)
        print(
            f"{label:28s} {results[label]:9.0f} authorizations/s"
            f"   (runs: {', '.join(f'{r:.0f}' for r in rates)};"
            f" mean ops per commit {statistics.mean(sizes):.1f})"
        )
    grouped, single = results.values()
    print(f"group commit / one commit per op: {grouped / single:.1f}x")


if __name__ == "__main__":
    main()
