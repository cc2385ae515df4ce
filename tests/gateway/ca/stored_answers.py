"""What ca.db keeps of the CA's answers, read as an operator would (read-only)."""

from __future__ import annotations

import sqlite3

from .conftest import Bank


def stored_answer(bank: Bank, rrpid: bytes) -> bytes | None:
    """The answer ca.db keeps under ``rrpid``, if any."""
    path = bank.config.path(bank.config.ca_db)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT response FROM responses WHERE rrpid = ?", (rrpid,)).fetchone()
    finally:
        db.close()
    return None if row is None else bytes(row[0])


def stored_answers(bank: Bank) -> int:
    """How many answers ca.db keeps, of every kind."""
    path = bank.config.path(bank.config.ca_db)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT count(*) FROM responses").fetchone()
    finally:
        db.close()
    return int(count)
