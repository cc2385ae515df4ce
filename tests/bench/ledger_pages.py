"""Benchmark: pages written and CPU per authorization in the SQLite writer, by hold-id kind.

    .venv/bin/python tests/bench/ledger_pages.py [--ops 1200] [--runs 3] [--groups 1,4,16]
                                                 [--warm 20000] [--cards 4]

What the ledger's writer thread does, without its threads: one connection opened as the
store opens it (WAL, synchronous=FULL) applies authorizations in groups of N, each in its
own savepoint, then COMMITs, on a ledger that already holds ``--warm`` authorizations.
Hold ids are either random (``new_id``) or time-ordered (``new_ordered_id``, what the
ledger mints); runs alternate between the two. Prints, per group size and kind, the
median over ``--runs`` of the writer's CPU per authorization and of the WAL pages
(frames) written per authorization, then the same pages by the table or index (B-tree)
they belong to, read from the WAL's frame headers and SQLite's ``dbstat``. Automatic
checkpoints are off while pages are counted, so each count is exactly what the commits
wrote. Each authorization is for one of ``--cards`` card accounts, at random (the bench
registers 50 cardholders).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import struct
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
from setcore.pan import random_pan

# Test card numbers are drawn under this BIN, one per card account of the benchmark.
TEST_BIN = "400000"
KINDS: dict[str, Callable[[], str]] = {
    "random": lambda: new_id("hold"),
    "ordered": lambda: new_ordered_id("hold"),
}


Run = tuple[float, float, dict[str, float]]
"""CPU microseconds, WAL pages, and WAL pages by B-tree, per authorization of one run."""


def wal_frame_pages(wal: Path) -> list[int]:
    """The database page number of every frame in a WAL file, in order."""
    data = wal.read_bytes()
    # A 32-byte file header (page size at offset 8), then frames: a 24-byte header that
    # starts with the page number, and the page.
    page_size = struct.unpack_from(">I", data, 8)[0]
    frame = 24 + page_size
    return [struct.unpack_from(">I", data, at)[0] for at in range(32, len(data) - frame + 1, frame)]


def pages_by_btree(conn: sqlite3.Connection, pages: list[int]) -> dict[str, int]:
    """How many of ``pages`` belong to each table or index (``dbstat``'s names)."""
    owner = {row["pageno"]: row["name"] for row in conn.execute("SELECT name, pageno FROM dbstat")}
    counts: dict[str, int] = {}
    for page in pages:
        name = owner.get(page, "(free)")
        counts[name] = counts.get(name, 0) + 1
    return counts


def one_run(directory: Path, *, kind: str, group: int, ops: int, warm: int, cards: int) -> Run:
    """What one run measured, per authorization."""
    keys = LedgerKeys.generate()
    path = directory / "ledger.db"
    ledger = Ledger(SqliteLedgerStore(path), keys)
    ledger.open_merchant_account(MERCHANT, EUR)
    pans = [random_pan(TEST_BIN).reveal() for _ in range(cards)]
    for pan in pans:
        ledger.open_card_account(pan, EXPIRY, 10**12, EUR)
    ledger.close()
    conn = _open_connection(str(path), 5000, reader=False)
    tx = SqliteTransaction(conn)
    indexes = [pan_index(keys, pan) for pan in pans]
    response = os.urandom(RESPONSE_BYTES)
    mint = KINDS[kind]
    pick = random.Random(cards)

    def authorize(i: int) -> None:
        index = indexes[pick.randrange(len(indexes))]
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
        pages = wal_frame_pages(Path(f"{path}-wal"))
        frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()["log"]
        assert frames == len(pages), f"the WAL holds {len(pages)} frames, SQLite says {frames}"
        by_btree = {name: n / done for name, n in pages_by_btree(conn, pages).items()}
        return cpu, frames / done, by_btree
    finally:
        conn.close()


def main() -> None:
    """Run the benchmark and print its medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm", type=int, default=20_000, help="authorizations made first")
    parser.add_argument("--groups", default="1,4,16")
    parser.add_argument("--cards", type=int, default=4, help="card accounts authorized on")
    args = parser.parse_args()
    groups = [int(g) for g in args.groups.split(",")]
    results: dict[tuple[int, str], list[Run]] = {}
    for _ in range(args.runs):
        for group in groups:
            for kind in KINDS:
                with tempfile.TemporaryDirectory() as tmp:
                    run = one_run(
                        Path(tmp), kind=kind, group=group, ops=args.ops, warm=args.warm,
                        cards=args.cards,
                    )  # fmt: skip
                results.setdefault((group, kind), []).append(run)
    print(f"{'group':>5}  {'hold ids':8}  {'CPU us/auth':>11}  {'WAL pages/auth':>14}  CPU runs")
    for (group, kind), runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        pages = statistics.median(r[1] for r in runs)
        print(f"{group:>5}  {kind:8}  {cpu:>11.0f}  {pages:>14.1f}  {[round(r[0]) for r in runs]}")
    print("\nWAL pages per authorization by table or index (medians)")
    for (group, kind), runs in results.items():
        names = sorted({name for r in runs for name in r[2]})
        shares = {name: statistics.median(r[2].get(name, 0.0) for r in runs) for name in names}
        print(f"  group {group}, {kind} hold ids:")
        for name, pages in sorted(shares.items(), key=lambda item: -item[1]):
            print(f"    {name:<28} {pages:5.2f}")


if __name__ == "__main__":
    main()
