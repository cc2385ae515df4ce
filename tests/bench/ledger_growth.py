"""Benchmark: does the SQLite writer's cost per authorization hold as the ledger grows?

    .venv/bin/python tests/bench/ledger_growth.py [--sizes 0,100000,300000,1000000]
                                                  [--cards 1000] [--group 4] [--ops 4000]
                                                  [--runs 3] [--cache-mb MB] [--dir DIR]

The other benchmarks measure a fresh bank or a ledger of 20,000 authorizations, but a
gateway that answers 900 authorizations per second adds 3 million an hour, and the
writer inserts into B-trees keyed by random values (XIDs and RRPIDs) that then outgrow
SQLite's page cache. This benchmark fills one ledger (``--cards`` card accounts, one
merchant), and each time it holds one of ``--sizes`` authorizations it measures
``--runs`` blocks of ``--ops`` authorizations, applied as the writer thread applies them
(one connection, a savepoint per operation, a durable COMMIT per ``--group``), on random
cards. Filling uses commits of 1,000 and is not measured.

Prints, per size: the median block's CPU per authorization (process time, one thread),
its system part, its wall time, and the database's size per authorization so far.
Needs about 3 KB of disk per authorization (``--dir`` chooses where; a temporary
directory by default, removed at the end).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

# This directory's module: the scripts run from here, so it is on the path.
from ledger_workload import EUR, EXPIRY, MERCHANT, RESPONSE_BYTES, authorize_in_savepoint

from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore
from gateway.ledger.identifiers import new_ordered_id
from gateway.ledger.pan import pan_index
from gateway.ledger.sqlite import SqliteTransaction, _open_connection
from setcore.pan import random_pan

FILL_GROUP = 1000
# Far above what the largest run can hold on one card (10^6 x 100 minor units).
CREDIT_LIMIT = 10**12


def _open_ledger(path: Path, cards: int) -> list[bytes]:
    """Create the ledger's merchant and card accounts; return the cards' PAN indexes."""
    keys = LedgerKeys.generate()
    ledger = Ledger(SqliteLedgerStore(path), keys)
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        pans = {random_pan("411111").reveal() for _ in range(cards)}
        for pan in pans:
            ledger.open_card_account(pan, EXPIRY, CREDIT_LIMIT, EUR)
        return [pan_index(keys, pan) for pan in pans]
    finally:
        ledger.close()


def _database_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


Measured = tuple[int, list[tuple[float, float, float]], int, int]
"""Authorizations held when measuring began, the blocks (CPU, system and wall us per
authorization), the database's bytes and the authorizations held after the blocks."""


def grow(path: Path, args: argparse.Namespace) -> list[Measured]:
    """Fill the ledger size by size and measure at each size."""
    indexes = _open_ledger(path, args.cards)
    conn = _open_connection(str(path), 5000, reader=False)
    if args.cache_mb is not None:
        conn.execute(f"PRAGMA cache_size = {-1024 * args.cache_mb}")  # negative: KiB
    tx = SqliteTransaction(conn)
    response = os.urandom(RESPONSE_BYTES)
    pick = random.Random(7).choice

    def apply(count: int, group: int) -> None:
        for start in range(0, count, group):
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(min(group, count - start)):
                hold_id = new_ordered_id("hold")
                authorize_in_savepoint(
                    conn, tx, pan_index=pick(indexes), hold_id=hold_id, response=response
                )
            conn.execute("COMMIT")

    results: list[Measured] = []
    held = 0
    try:
        for size in args.sizes:
            # Sizes closer together than one size's blocks are measured where they fall.
            apply(size - held, FILL_GROUP)
            held = started = max(held, size)
            blocks = []
            for _ in range(args.runs):
                before, wall = os.times(), time.perf_counter()
                apply(args.ops, args.group)
                after, wall = os.times(), time.perf_counter() - wall
                # Each clock's difference first: equal tick counts then give exactly 0,
                # where summing first could give -0 (a float rounding) in a short block.
                system = (after.system - before.system) / args.ops
                cpu = (after.user - before.user) / args.ops + system
                blocks.append((cpu * 1e6, system * 1e6, wall / args.ops * 1e6))
                held += args.ops
            results.append((started, blocks, _database_bytes(path), held))
            print(f"  measured at {started:,} authorizations", file=sys.stderr)
    finally:
        conn.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="0,100000,300000,1000000",
        help="ledger sizes (authorizations) to measure at, ascending",
    )
    parser.add_argument("--cards", type=int, default=1000)
    parser.add_argument("--group", type=int, default=4, help="authorizations per commit")
    parser.add_argument("--ops", type=int, default=4000, help="authorizations per block")
    parser.add_argument("--runs", type=int, default=3, help="blocks measured per size")
    parser.add_argument("--cache-mb", type=int, help="SQLite page cache (default: the store's)")
    parser.add_argument("--dir", type=Path, help="where the ledger goes (default: a temp dir)")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if args.sizes != sorted(args.sizes) or args.sizes[0] < 0:
        parser.error("--sizes must be ascending and not negative")
    with tempfile.TemporaryDirectory(prefix="ledger-growth-", dir=args.dir) as work:
        results = grow(Path(work) / "ledger.db", args)
    cache = "the store's page cache" if args.cache_mb is None else f"a {args.cache_mb} MB cache"
    print(f"writer CPU per authorization in us, commits of {args.group}, {args.cards} cards, "
          f"{cache}; median of {args.runs} blocks of {args.ops} (the blocks)")  # fmt: skip
    print(
        f"{'ledger size':>12}  {'CPU':>5}  {'system':>6}  {'wall':>5}  {'bytes/auth':>10}  blocks"
    )
    for size, blocks, size_bytes, held in results:
        cpu, system, wall = sorted(blocks)[len(blocks) // 2]
        shown = ", ".join(f"{b[0]:.0f}" for b in blocks)
        print(f"{size:>12,}  {cpu:>5.0f}  {system:>6.0f}  {wall:>5.0f}  "
              f"{size_bytes / held:>10,.0f}  ({shown})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
