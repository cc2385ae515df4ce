"""A merchant's certification over the worker's own ledger writer, which already waits
for the turn for another request's operation when the account opening is queued.

The opening waits inside the CA's write transaction (ca.db locked): its arrival ends the
writer's wait, so ca.db is shut to other processes only for the write's own work, not
for as long as another call of the worker holds the turn (``group_commit``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from gateway.cpu_turn import PROCESS_TURN
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger
from hsm.observer import waiting
from setcore.freshness import new_id
from setcore.registration_merchant import MerchantIdentity

from .conftest import Bank
from .ledger_issuer_support import ca_asking
from .test_ca_write_unwaited import (
    SHUT_AT_MOST_S,
    _holder,
    certified_while_watched,
    ledger_in_worker,
)


class HeldThenOtherOperation(LedgerDirectory):
    """As the CA write waits aside (a token wait as it signs), another call takes the turn;
    another request's ledger operation reaches the writer, which waits for the turn for
    it; then the account opening."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.holder: threading.Thread | None = None
        self.other: threading.Thread | None = None

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        has_turn = threading.Event()
        self.holder = _holder(has_turn)
        with waiting():  # aside: the holder takes the turn
            self.holder.start()
            assert has_turn.wait(5)
        store = self._ledger._store
        self.other = threading.Thread(
            target=lambda: store.execute(lambda tx: tx.one("SELECT 1")), daemon=True
        )
        self.other.start()
        # the holder, this write (on paper) and the writer waiting for the turn
        deadline = time.monotonic() + 5
        while PROCESS_TURN.wanting < 3:
            assert time.monotonic() < deadline, "the writer never waited for the turn"
            time.sleep(0.005)
        super().merchant_registered(merchant_id, name)


def test_an_account_opening_ends_the_writers_wait_for_the_turn(
    ec_bank: Bank, tmp_path: Path
) -> None:
    identity = MerchantIdentity(f"m-{new_id().hex()[:8]}", "Held Ltd")
    with ledger_in_worker(tmp_path / "ledger.db") as ledger:
        directory = HeldThenOtherOperation(ledger)
        with ca_asking(ec_bank, directory) as bank:
            shut = certified_while_watched(bank, identity)
            assert directory.holder is not None and directory.other is not None
            directory.holder.join()
            directory.other.join(5)
            assert not directory.other.is_alive()
        assert ledger.merchant_account(identity.merchant_id) is not None
    assert shut < SHUT_AT_MOST_S, f"ca.db shut to other processes for {shut:.2f} s"
