"""What the tests of ``setpay bank show-unanswered`` and ``settle-unanswered`` share: a
stopped bank on a SQLite or PostgreSQL ledger (``made_bank``), decisions left awaiting
their answer on it, and raw SQL moving them back in time.

Real parts: ``init_bank``, the bank's ledger opened as the gateway opens it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import pruning_ledger
from gateway.config import load
from gateway.issuer import open_ledger
from gateway.ledger import AnswerNotStored, Ledger, Outcome
from gateway.ledger.settle_age import SETTLE_MIN_AGE_MS
from gateway.provisioning import init_bank
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    TEST_DATABASE,
    Backend,
    PgCluster,
    postgres_backend,
    sqlite_backend,
)
from tests.gateway.ledger.retention_support import unsigned

REASON = "merchant gone: settled with its acquirer, ticket 4711"
LIMIT = 100_000
# How far back a decision is moved to be old enough to settle without --younger-ok.
OLD_MS = SETTLE_MIN_AGE_MS + 60_000


@dataclass(frozen=True)
class Made:
    """A stopped bank on one ledger store, and raw SQL on its ledger (``db``)."""

    config: Path
    db: Backend

    def bank(self, *argv: str) -> list[str]:
        return ["--config", str(self.config), *argv]

    def requests(self) -> list[tuple[object, ...]]:
        """Every row of ``requests`` as it is, in a fixed order."""
        return sorted(self.db.raw_query("SELECT * FROM requests"), key=repr)

    def counted(self) -> int:
        """The decisions ``setpay ca prune-gateway`` counts as awaiting their answer."""
        config = load(self.config)
        shown = pruning_ledger.shown_ledger(config.ledger_url())
        return pruning_ledger.read_unanswered(config, shown, frozenset(), None).count


def made_bank(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Made:
    """A new bank with a merchant and a card, its ledger the SQLite file ``init_bank``
    made or, for ``request.param`` "postgres", a new schema of the module's ``pg``
    cluster (``SETPAY_LEDGER``, as the bank's commands get it)."""
    directory = tmp_path / "bank"
    if request.param == "postgres":
        cluster: PgCluster = request.getfixturevalue("pg")
        schema = f"unanswered_{os.urandom(4).hex()}"
        monkeypatch.setenv("SETPAY_LEDGER", cluster.ledger_url(schema))
        db = postgres_backend(cluster.conninfo(TEST_DATABASE, schema))
    else:
        db = sqlite_backend(directory / "ledger.db")
    made = init_bank(directory, env={})
    with ledger_of(made.config_path) as ledger:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, LIMIT, EUR)
    return Made(made.config_path, db)


def ledger_of(config: Path) -> contextlib.closing[Ledger]:
    return contextlib.closing(open_ledger(load(config)))


def sale(ledger: Ledger, rrpid: bytes, respond: Callable[[Outcome], bytes]) -> bytes:
    """A sale of 9.00 EUR decided under ``rrpid``, answered by ``respond``."""
    return ledger.authorize(
        pan=PAN_A, pan_expiry=EXPIRY, amount=900, currency=EUR, merchant_id=MERCHANT,
        xid=b"xid-" + rrpid, pi_digest=b"pi-" + rrpid, rrpid=rrpid,
        request_digest=b"digest-" + rrpid, respond=respond, capture_now=True,
    )  # fmt: skip


def authorization(ledger: Ledger, rrpid: bytes, respond: Callable[[Outcome], bytes]) -> bytes:
    """An authorization of 9.00 EUR (a hold, no capture) decided under ``rrpid``."""
    return ledger.authorize(
        pan=PAN_A, pan_expiry=EXPIRY, amount=900, currency=EUR, merchant_id=MERCHANT,
        xid=b"xid-" + rrpid, pi_digest=b"pi-" + rrpid, rrpid=rrpid,
        request_digest=b"digest-" + rrpid, respond=respond,
    )  # fmt: skip


def left_unanswered(made: Made, *, age_ms: int = OLD_MS) -> bytes:
    """A sale decided, its capture posted, its answer never stored, and made ``age_ms``
    earlier (by default old enough to be settled by hand, ``aged``); its RRPID."""
    rrpid = os.urandom(32)
    with ledger_of(made.config) as ledger, pytest.raises(AnswerNotStored):
        sale(ledger, rrpid, unsigned)
    if age_ms:
        aged(made, rrpid, age_ms)
    return rrpid


def aged(made: Made, rrpid: bytes, ms: int = OLD_MS) -> None:
    """The decision under ``rrpid`` made and checked ``ms`` earlier than it was (negative:
    later, as by a clock set back since)."""
    made.db.raw_execute(
        f"UPDATE requests SET created_at_ms = created_at_ms - ({ms}),"
        f" checked_at_ms = checked_at_ms - ({ms}) WHERE rrpid = {blob(made, rrpid)}"
    )


def ageless(line: str) -> str:
    """A listed decision's line without its age, which grows between two commands."""
    return re.sub(r" \(age [^)]*\)", "", line)


def new_rrpid(made: Made) -> str:
    """SQL for a fresh random RRPID on the made store."""
    return "randomblob(32)" if made.db.name == "sqlite" else "sha256(random()::text::bytea)"


def blob(made: Made, value: bytes) -> str:
    """``value`` as an SQL literal of the made store."""
    return f"X'{value.hex()}'" if made.db.name == "sqlite" else f"'\\x{value.hex()}'::bytea"
