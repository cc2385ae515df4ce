"""The plan each store makes of the statement a reversal finds its original by
(``settlement._ORIGINAL``), read on a ledger created or migrated already, so that a test
can say which index serves it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg

from gateway.ledger import settlement

# The kinds of transfer a reversal looks for (``transfers_by_request`` holds only these);
# the one asked for is written into the statement, so nothing else is taken.
ORIGINAL_KINDS = ("capture", "credit")


def sqlite_original_plan(path: Path) -> str:
    """SQLite's plan of the lookup in the ledger at ``path``, its steps joined by " | "."""
    conn = sqlite3.connect(path)
    try:
        return " | ".join(
            str(row[3])
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN {settlement._ORIGINAL}", ("hold", "capture", b"rrpid")
            )
        )
    finally:
        conn.close()


def postgres_original_plan(conninfo: str, kind: str) -> str:
    """PostgreSQL's generic plan of the lookup of an original of ``kind`` in the ledger at
    ``conninfo``, its lines joined by " | "."""
    if kind not in ORIGINAL_KINDS:
        raise ValueError(f"a reversal's original is one of {ORIGINAL_KINDS}, not {kind!r}")
    numbered = iter(range(1, 4))
    query = re.sub(r"\?", lambda _: f"${next(numbered)}", settlement._ORIGINAL)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # The plan the store's prepared statement gets once PostgreSQL stops planning it
        # per call (a generic plan knows no parameter's value); with empty tables a scan
        # would win on cost, so scans are priced out to show which index could serve.
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("SET enable_seqscan = off")
        conn.execute(f"PREPARE original(text, text, bytea) AS {query}".encode())
        rows = conn.execute(
            f"EXPLAIN EXECUTE original('hold', '{kind}', '\\x00'::bytea)".encode()
        ).fetchall()
    return " | ".join(str(row[0]) for row in rows)
