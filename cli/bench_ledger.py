"""The bank's ledger as ``setpay bench authorize`` reads it: the holds made for the bench's
merchant, which count the holds each gateway run made (``clients.loadtest.holds``), and the
filesystem its commits go to (a ledger kept in memory commits for nothing:
``clients.loadtest.machine``).
"""

from __future__ import annotations

from pathlib import Path

from clients.loadtest import machine
from clients.loadtest.holds import LedgerProbe, LedgerReading
from gateway.config import BankConfig
from gateway.ledger import Ledger, LedgerError


def ledger_probe(ledger: Ledger, merchant_id: str) -> LedgerProbe:
    """A probe of the holds ``ledger`` has for ``merchant_id``, the bench's merchant (None
    when they cannot be read: the ledger is unreachable, or the merchant has no account)."""

    def probe() -> LedgerReading | None:
        try:
            held = ledger.merchant_holds(merchant_id)
        except LedgerError:
            return None
        return LedgerReading(held.count, held.amount)

    return probe


def ledger_filesystem(config: BankConfig) -> str:
    """Where the ledger's commits go: its directory's filesystem type (SQLite), or a
    database server's."""
    url = config.ledger_url()
    if not url.startswith("sqlite:"):
        return "a database server"
    return machine.filesystem_of(Path(url.removeprefix("sqlite:")).parent) or "unknown"


def memory_ledger_doubt(filesystem: str, chosen: bool) -> list[str]:
    """A DOUBT for a ledger kept in memory that the user did not choose (``chosen``: they
    named its directory)."""
    if filesystem not in machine.MEMORY_FILESYSTEMS or chosen:
        return []
    return [f"the spawned bank's ledger is on {filesystem} (the temporary directory): a "
            "commit's fsync writes nothing there, so the gateway's figures are faster than "
            "a bank that keeps its ledger; give --workdir on a disk, or name a tmpfs there "
            "to measure one on purpose"]  # fmt: skip
