"""Benchmark: pages written and CPU per authorization in the SQLite writer, by hold-id kind.

    .venv/bin/python tests/bench/ledger_pages.py [--ops 1200] [--runs 3] [--groups 1,4,16]
                                                 [--warm 20000]

What the ledger's writer thread does, without its threads: one connection opened as the
store opens it (WAL, synchronous=FULL) applies authorizations in groups of N, each in its
own savepoint, then COMMITs, on a ledger that already holds ``--warm`` authorizations.
Hold ids are either random (``new_id``) or time-ordered (``new_ordered_id``, what the
ledger mints); runs alternate between the two. Prints, per group size and kind, the
median over ``--runs`` of the writer's CPU per authorization and of the WAL pages
(frames) written per authorization. Automatic checkpoints are off while pages are
counted, so each count is exactly what the commits wrote.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# This directory's module: the scripts run from here, so it is on the path.
from ledger_workload import EUR, EXPIRY, MERCHANT, RESPONSE_BYTES, authorize_in_savepoint

from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore
from gateway.ledger.identifiers import new_id, new_ordered_id
from gateway.ledger.pan import pan_index
from gateway.ledger.sqlite import SqliteTransaction, _open_connection

# Test card numbers (Luhn-valid test PANs), one per card account of the benchmark.
PANS = ("4111111111111111", "5555555555554444", "4012888888881881", "4242424242424242")
KINDS: dict[str, Callable[[], str]] = {
    "random": lambda: new_id("hold"),
    "ordered": lambda: new_ordered_id("hold"),
}


def one_run(directory: Path, *, kind: str, group: int, ops: int, warm: int) -> tuple[float, float]:
    """CPU microseconds and WAL pages per authorization of one run."""
    keys = LedgerKeys.generate()
    path = directory / "ledger.db"
    ledger = Ledger(SqliteLedgerStore(path), keys)
    ledger.open_merchant_account(MERCHANT, EUR)
    for pan in PANS:
        ledger.open_card_account(pan, EXPIRY, 10**12, EUR)
    ledger.close()
    conn = _open_connection(str(path), 5000, reader=False)
    tx = SqliteTransaction(conn)
    indexes = [pan_index(keys, pan) for pan in PANS]
    response = os.urandom(RESPONSE_BYTES)
    mint = KINDS[kind]

    def authorize(i: int) -> None:
        index = indexes[i % len(indexes)]
        authorize_in_savepoint(conn, tx, pan_index=index, hold_id=mint(), response=response)

    try:
        # A ledger that already holds ``warm`` authorizations: a random key's B-tree page
        # is then rarely one an earlier insert of the same group already wrote.
        for start in range(0, warm, 500):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(start, min(start + 500, warm)):
                authorize(i)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        done = 0
        started = time.process_time()
        while done < ops:
            conn.execute("BEGIN IMMEDIATE")
            for i in range(group):
                authorize(done + i)
            conn.execute("COMMIT")
            done += group
        cpu = (time.process_time() - started) / done * 1e6
        frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()["log"]
        return cpu, frames / done
    finally:
        conn.close()


def main() -> None:
    """Run the benchmark and print its medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm", type=int, default=20_000, help="authorizations made first")
    parser.add_argument("--groups", default="1,4,16")
    args = parser.parse_args()
    groups = [int(g) for g in args.groups.split(",")]
    results: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for _ in range(args.runs):
        for group in groups:
            for kind in KINDS:
                with tempfile.TemporaryDirectory() as tmp:
                    run = one_run(Path(tmp), kind=kind, group=group, ops=args.ops, warm=args.warm)
                results.setdefault((group, kind), []).append(run)
    print(f"{'group':>5}  {'hold ids':8}  {'CPU us/auth':>11}  {'WAL pages/auth':>14}  CPU runs")
    for (group, kind), runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        pages = statistics.median(r[1] for r in runs)
        print(f"{group:>5}  {kind:8}  {cpu:>11.0f}  {pages:>14.1f}  {[round(r[0]) for r in runs]}")


if __name__ == "__main__":
    main()
