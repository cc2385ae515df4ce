"""Sums over many rows that stay exact on every store, however large they grow.

Each account's running balances fit a 64-bit column (``limits`` says why), but a sum over
many rows need not: every account of a currency, every authorization ever made between a
card and a merchant. PostgreSQL's SUM of a BIGINT is a NUMERIC and carries on past
2**63 - 1; SQLite's SUM of integers raises "integer overflow" instead (its TOTAL goes on
as a float, which rounds: no use for money). So ``grouped_sums`` runs the SQL SUM, which
almost always fits and costs what it always did, and only when SQLite reports the
overflow reads the same rows ungrouped and adds them up in Python's unbounded integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.ledger.store import Row, Transaction

# SQLite's message for a SUM past int64 (sqlite3.OperationalError, SQLITE_ERROR). The
# rules see the driver's own error (the store translates it only at the transaction's
# edge), and a failed SELECT leaves a SQLite transaction as it was, so the recount can run
# in the same snapshot.
_SQLITE_OVERFLOW = "integer overflow"


def overflowed(exc: Exception) -> bool:
    """Whether ``exc`` is SQLite's refusal of a SUM past int64."""
    return str(exc) == _SQLITE_OVERFLOW


def grouped_sums(
    tx: Transaction,
    aggregate: str,
    rows: str,
    keys: Sequence[str],
    columns: Sequence[str],
    *params: object,
) -> list[Row]:
    """The rows of ``aggregate``, a query summing ``columns`` per ``keys`` (GROUP BY).

    Should SQLite's SUM overflow, the same figures from ``rows`` instead: a query over the
    same rows with the same ``params``, naming each of ``keys`` and ``columns`` once per
    row (a count is a column of 1s), summed here per key and returned in key order. With
    no ``keys``, there is one group."""
    try:
        return tx.all(aggregate, *params)
    except Exception as exc:  # the driver's own error: the store has not translated it
        if not overflowed(exc):
            raise
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in tx.all(rows, *params):
        key = tuple(r[k] for k in keys)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {**dict(zip(keys, key, strict=True)), **dict.fromkeys(columns, 0)}
        for column in columns:
            group[column] += int(r[column])
    return [groups[key] for key in sorted(groups)]
