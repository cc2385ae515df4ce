"""What a bank's CA has published, read from its ``ca.db`` as a test checks it."""

from __future__ import annotations

from pathlib import Path

from gateway.ca.publishing import current_revocation
from gateway.ca.records import BciRecord
from gateway.ca.store import CaStore
from setcore.registration import RevocationData


def published_revocation(bank_directory: Path) -> tuple[BciRecord, RevocationData]:
    """The newest BCI in the ``ca.db`` of ``bank_directory`` and the CRLs it lists (a bank
    made by ``init_bank`` has published one)."""
    store = CaStore.open(bank_directory / "ca.db")
    try:
        found = current_revocation(store)
    finally:
        store.close()
    assert found is not None
    return found
