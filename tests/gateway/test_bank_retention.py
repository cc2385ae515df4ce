"""A serving bank prunes its ledger on its own: ``start_bank`` opens the ledger with the
configuration's ``[ledger] retention_days`` (``gateway.issuer.open_ledger``), and the hold
sweeper it starts prunes a stored answer older than that. What pruning keeps and drops is
``ledger/test_ledger_retention``'s; here, only that a bank does it."""

from __future__ import annotations

import dataclasses
import os
import time

from gateway import process
from gateway.issuer import open_store
from gateway.ledger import Ledger, LedgerKeys
from gateway.ledger.outcomes import Decline
from gateway.ledger.retention import DAY_MS, DEFAULT_RETENTION_DAYS, MIN_RETENTION_DAYS

from .actors import World

# A retention other than the default, so the test tells the configuration's from none.
DAYS = MIN_RETENTION_DAYS
# How long the bank's sweeper may take to prune the row: its first round runs as it
# starts, in milliseconds; the rest is slack for a loaded test machine.
PRUNED_WITHIN_SECONDS = 20.0


def test_a_started_banks_sweeper_prunes_to_the_configured_retention(ec_world: World) -> None:
    assert DAYS != DEFAULT_RETENTION_DAYS
    config = dataclasses.replace(ec_world.config, retention_days=DAYS)
    # A decision stored a day past the horizon, through a ledger whose clock says so (a
    # decline the gateway decides touches no card, so any keys will do).
    rrpid, digest = b"old-" + os.urandom(8).hex().encode(), os.urandom(32)
    old_ms = int(time.time() * 1000) - (DAYS + 1) * DAY_MS
    past = Ledger(open_store(config), LedgerKeys.generate(), clock=lambda: old_ms)
    try:
        past.decline(
            Decline.AMOUNT_MISMATCH, rrpid=rrpid, request_digest=digest, respond=lambda o: b"no"
        )
        assert past.stored_response(rrpid, digest) == b"no"
    finally:
        past.close()

    running = process.start_bank(
        config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0", sweep_holds=True
    )
    try:
        deadline = time.monotonic() + PRUNED_WITHIN_SECONDS
        while running.ledger.stored_response(rrpid, digest) is not None:
            assert time.monotonic() < deadline, "the bank's sweeper never pruned the old row"
            time.sleep(0.05)
        assert running.ledger.retention_days == DAYS
    finally:
        running.stop(None)
