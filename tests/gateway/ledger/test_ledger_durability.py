"""Durability: state survives a reopen, PANs never hit the disk, the schema is guarded."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest

from gateway.ledger import (
    AccountStatus,
    AnswerNotStored,
    Authorized,
    CaptureItem,
    CreditItem,
    Decline,
    Declined,
    Ledger,
    LedgerImbalance,
    LedgerKeys,
    Outcome,
    PiPreviouslyUsed,
    PostgresLedgerStore,
    ReversalItem,
    SchemaError,
    SqliteLedgerStore,
    StoreUnavailable,
    TransactionKind,
    Unanswered,
    schema,
)
from gateway.ledger.limits import MAX_HOLD_LIFETIME_MS
from gateway.ledger.schema import SCHEMA_VERSION
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PAN_B,
    PAN_C,
    Backend,
    Bank,
    FakeClock,
    luhn_pan,
    sqlite_backend,
)


def test_every_state_survives_a_reopen(
    backend: Backend, keys: LedgerKeys, clock: FakeClock
) -> None:
    first = Bank(Ledger(backend.open_store(), keys, clock=clock))
    led = first.ledger
    led.open_merchant_account(MERCHANT, EUR)
    a = led.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
    b = led.open_card_account(PAN_B, EXPIRY, 5_000, EUR)
    led.block_card_account(b.account_id)
    auth = first.authorize(PAN_A, 4000, xid=b"xid-1", rrpid=b"auth-1", digest=b"d-1")
    assert isinstance(auth, Authorized)
    auth_bytes = led.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=4000,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"xid-1",
        pi_digest=b"pi",
        rrpid=b"auth-1",
        request_digest=b"d-1",
        respond=first.respond,
    )
    first.call(led.capture, merchant_id=MERCHANT, items=[CaptureItem(auth.hold_id, 2500, EUR)])
    first.call(led.credit, merchant_id=MERCHANT, items=[CreditItem(auth.hold_id, 500, EUR)])
    first.call(led.close_batch, MERCHANT)
    before = (
        led.card_account(a.account_id),
        led.card_account(b.account_id),
        led.merchant_account(MERCHANT),
        led.hold(auth.hold_id),
        led.totals(),
    )
    closed = led.batch_summary(MERCHANT, first.outcomes[-1].summary.batch_id)  # type: ignore[union-attr]
    led.close()

    second = Bank(Ledger(backend.open_store(), keys, clock=clock))
    led = second.ledger
    after = (
        led.card_account(a.account_id),
        led.card_account(b.account_id),
        led.merchant_account(MERCHANT),
        led.hold(auth.hold_id),
        led.totals(),
    )
    assert after == before
    assert after[1].status is AccountStatus.BLOCKED
    assert led.batch_summary(MERCHANT, closed.batch_id) == closed
    assert closed.totals[TransactionKind.CAPTURE].amount == 2500
    assert led.reveal_pan(a.account_id) == PAN_A
    # The idempotency store and the PI replay store survive too.
    replay = led.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=4000,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"xid-1",
        pi_digest=b"pi",
        rrpid=b"auth-1",
        request_digest=b"d-1",
        respond=second.respond,
    )
    assert replay == auth_bytes and second.outcomes == []
    with pytest.raises(PiPreviouslyUsed):
        second.authorize(PAN_A, 10, xid=b"xid-1")
    assert second.authorize(PAN_B, 10) == Declined(Decline.BLOCKED_ACCOUNT)
    led.check_balanced()
    led.close()


class _OpaqueBank(Bank):
    """Responds with opaque bytes, as real (signed, sealed) responses are: the scan below
    must judge what the ledger writes, not decimal numbers a test chose to respond with."""

    def respond(self, outcome: Outcome) -> bytes:
        self.outcomes.append(outcome)
        return hashlib.sha256(repr(outcome).encode()).digest()


def test_pan_never_reaches_the_sqlite_files(tmp_path: Path, keys: LedgerKeys) -> None:
    path = tmp_path / "ledger.db"
    started_ms = time.time_ns() // 1_000_000
    pans = [PAN_A, PAN_B, PAN_C] + [luhn_pan(f"52000000{i:07d}") for i in range(20)]
    bank = _OpaqueBank(Ledger(SqliteLedgerStore(path), keys))
    bank.ledger.open_merchant_account(MERCHANT, EUR)
    for pan in pans:
        bank.ledger.open_card_account(pan, EXPIRY, 10_000, EUR)
        auth = bank.authorize(pan, 100)
        assert isinstance(auth, Authorized)
        bank.ledger.find_card_account(pan)
    # Scan while the WAL still holds the recent pages, then again after checkpoint and close.
    for moment in ("open", "closed"):
        if moment == "closed":
            bank.ledger.close()
        files = sorted(tmp_path.glob("ledger.db*"))
        assert path in files
        for file in files:
            data = file.read_bytes()
            for pan in pans:
                assert pan.encode() not in data, f"{moment}: a PAN is in {file.name}"
                assert pan.encode("utf-16-le") not in data
            for run in re.findall(rb"\d{13,19}", data):
                # A decision kept for its answer is JSON text (``outcome_codec``), with a
                # hold's expiry in Unix ms: 13 digits, not a card.
                if _a_time_of_this_test(int(run), started_ms):
                    continue
                assert not _luhn_valid(run.decode()), f"{moment}: a card-like number in {file.name}"


def _a_time_of_this_test(number: int, started_ms: int) -> bool:
    return started_ms <= number <= time.time_ns() // 1_000_000 + MAX_HOLD_LIFETIME_MS


def _luhn_valid(digits: str) -> bool:
    return luhn_pan(digits[:-1]) == digits


def test_schema_version_is_recorded(backend: Backend) -> None:
    backend.open_store().close()
    store = backend.open_store()
    try:
        # Ledger code, not a lambda: it must also reach a database behind the ledger service.
        version = store.execute(schema.current_version)
    finally:
        store.close()
    assert version == SCHEMA_VERSION


def test_a_database_newer_than_the_code_is_refused(backend: Backend) -> None:
    backend.open_store().close()
    backend.raw_execute(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match=r"knows up to"):
        backend.open_store()


@pytest.mark.parametrize(
    "recorded",
    [
        "UPDATE schema_version SET version = -1",
        "UPDATE schema_version SET version = 0",
        "INSERT INTO schema_version (version) VALUES (1)",  # two versions at once
    ],
    ids=["negative", "zero", "two-rows"],
)
def test_a_schema_version_no_release_wrote_is_refused_before_any_migration(
    backend: Backend, recorded: str
) -> None:
    backend.open_store().close()
    backend.raw_execute(recorded)
    with pytest.raises(SchemaError, match="no schema version this code knows"):
        backend.open_store()
    # Nothing was migrated: the record is as it was left, and refused again.
    with pytest.raises(SchemaError, match="no schema version this code knows"):
        backend.open_store()


@pytest.mark.parametrize("value", ["'three'", "3.5", "X'03'"], ids=["text", "real", "blob"])
def test_a_schema_version_that_is_not_an_integer_is_refused(tmp_path: Path, value: str) -> None:
    # SQLite keeps whatever a column is given (the table predates STRICT tables).
    path = tmp_path / "ledger.db"
    SqliteLedgerStore(path).close()
    sqlite_backend(path).raw_execute(f"UPDATE schema_version SET version = {value}")
    with pytest.raises(SchemaError, match="no schema version this code knows"):
        SqliteLedgerStore(path)


def _undo_version_4(backend: Backend) -> None:
    """Take away what schema versions 8 (decisions settled by hand), 5 (enrolment codes,
    the key check) and 4 (retention) added, and put back the index version 6 dropped, as
    a rewind to an older one must."""
    for statement in (
        "ALTER TABLE requests DROP COLUMN settled_reason",
        "ALTER TABLE requests DROP COLUMN settled_at_ms",
        "CREATE INDEX transfers_by_hold ON transfers (hold_id)",
        "DROP TABLE ledger_key_check",
        "ALTER TABLE card_accounts DROP COLUMN enrolment_hash",
        "DROP TABLE retention_marks",
        "DROP INDEX pi_uses_by_death",
        "ALTER TABLE pi_uses DROP COLUMN dead_after_ms",
        "DROP INDEX transfers_credit_by_rrpid",
        "DROP INDEX requests_by_age",
    ):
        backend.raw_execute(statement)


def test_a_version_1_database_can_keep_a_decision_awaiting_its_answer(
    backend: Backend, keys: LedgerKeys
) -> None:
    backend.open_store().close()
    # Back to what version 1 of the code left: nowhere to keep an outcome.
    _undo_version_4(backend)
    backend.raw_execute("ALTER TABLE requests DROP COLUMN checked_at_ms")
    backend.raw_execute("ALTER TABLE requests DROP COLUMN outcome")
    backend.raw_execute("UPDATE schema_version SET version = 1")
    ledger = Ledger(backend.open_store(), keys)
    try:
        # A decline is decided and kept, then answered: it needs the column.
        answer = ledger.decline(
            Decline.AMOUNT_MISMATCH,
            rrpid=b"r-1",
            request_digest=b"d-1",
            respond=lambda outcome: b"declined " + str(outcome).encode(),
        )
        assert answer.startswith(b"declined Declined(")
        assert ledger.stored_response(b"r-1", b"d-1") == answer
    finally:
        ledger.close()
    store = backend.open_store()
    try:
        assert store.execute(schema.current_version) == SCHEMA_VERSION == 8
    finally:
        store.close()


def test_a_decision_left_unanswered_under_version_2_is_checked_as_of_its_decision(
    backend: Backend, keys: LedgerKeys, clock: FakeClock
) -> None:
    def unsigned(outcome: Outcome) -> bytes:
        raise RuntimeError("the signing key went away")

    ledger = Ledger(backend.open_store(), keys, clock=clock)
    try:
        with pytest.raises(AnswerNotStored):
            ledger.decline(
                Decline.AMOUNT_MISMATCH, rrpid=b"r-1", request_digest=b"d-1", respond=unsigned
            )
    finally:
        ledger.close()
    decided_at = clock.now_ms
    # Back to what version 2 of the code left: no moment of the check.
    _undo_version_4(backend)
    backend.raw_execute("ALTER TABLE requests DROP COLUMN checked_at_ms")
    backend.raw_execute("UPDATE schema_version SET version = 2")
    clock.advance(60_000)
    ledger = Ledger(backend.open_store(), keys, clock=clock)
    try:
        recorded = ledger.stored_response(b"r-1", b"d-1")
        # The decision's own time stands in for the check's.
        assert recorded == Unanswered(
            Declined(Decline.AMOUNT_MISMATCH), decided_at_ms=decided_at, checked_at_ms=decided_at
        )
    finally:
        ledger.close()


def test_tampered_books_do_not_balance(bank: Bank, backend: Backend) -> None:
    auth = bank.authorize(PAN_A, 4000)
    assert isinstance(auth, Authorized)
    bank.ledger.check_balanced()
    backend.raw_execute("UPDATE accounts SET debits_posted = debits_posted + 1 WHERE kind = 'card'")
    with pytest.raises(LedgerImbalance):
        bank.ledger.check_balanced()
    backend.raw_execute("UPDATE accounts SET debits_posted = debits_posted - 1 WHERE kind = 'card'")
    backend.raw_execute(f"UPDATE holds SET captured = 1 WHERE id = '{auth.hold_id}'")
    with pytest.raises(LedgerImbalance, match=auth.hold_id):
        bank.ledger.check_balanced()
    backend.raw_execute(f"UPDATE holds SET captured = 0 WHERE id = '{auth.hold_id}'")


@pytest.mark.parametrize("kind", ["credit", "capture-reversal", "credit-reversal"])
def test_a_settlement_transfer_outside_any_hold_is_an_imbalance(
    bank: Bank, backend: Backend, kind: str
) -> None:
    # A refund posted straight from the merchant to the card, balanced in itself: only
    # the rule that every transfer belongs to a hold (whose figures bound refunds) sees it.
    merchant = bank.ledger.merchant_account(MERCHANT).account_id
    card = bank.ledger.find_card_account(PAN_A).account_id
    forged = (
        "INSERT INTO transfers (kind, phase, debit_account_id, credit_account_id, amount,"
        f" currency, created_at_ms) VALUES ('{kind}', 'single', '{merchant}', '{card}', 500,"
        f" {EUR}, 1)"
    )
    backend.raw_execute(forged)
    backend.raw_execute(f"UPDATE accounts SET debits_posted = 500 WHERE id = '{merchant}'")
    backend.raw_execute(f"UPDATE accounts SET credits_posted = 500 WHERE id = '{card}'")
    with pytest.raises(LedgerImbalance, match=rf"\({kind}\) belongs to no hold"):
        bank.ledger.check_balanced()
    backend.raw_execute("DELETE FROM transfers WHERE hold_id IS NULL")
    backend.raw_execute("UPDATE accounts SET debits_posted = 0, credits_posted = 0")
    bank.ledger.check_balanced()


@pytest.mark.parametrize(
    ("kind", "column", "match"),
    [
        ("capture", "hold_id", "belongs to no hold"),
        ("capture", "batch_id", "is in no batch"),
        ("capture-reversal", "batch_seq", "is in no batch"),
        ("capture-reversal", "reverses_id", "names no original"),
    ],
)
def test_a_settlement_transfer_missing_its_hold_batch_or_original_is_an_imbalance(
    bank: Bank, backend: Backend, kind: str, column: str, match: str
) -> None:
    auth = bank.authorize(PAN_A, 4000)
    assert isinstance(auth, Authorized)
    bank.call(
        bank.ledger.capture,
        merchant_id=MERCHANT,
        items=[CaptureItem(auth.hold_id, 4000, EUR)],
        rrpid=b"cap-1",
    )
    bank.call(
        bank.ledger.reverse_capture,
        merchant_id=MERCHANT,
        items=[ReversalItem(auth.hold_id, b"cap-1")],
    )
    bank.ledger.check_balanced()
    backend.raw_execute(f"CREATE TABLE saved AS SELECT id, {column} AS value FROM transfers")
    backend.raw_execute(f"UPDATE transfers SET {column} = NULL WHERE kind = '{kind}'")
    with pytest.raises(LedgerImbalance, match=rf"\({kind}\) {match}"):
        bank.ledger.check_balanced()
    backend.raw_execute(
        f"UPDATE transfers SET {column} = (SELECT value FROM saved WHERE saved.id = transfers.id)"
    )
    bank.ledger.check_balanced()


def test_a_closed_store_is_unavailable(backend: Backend, keys: LedgerKeys) -> None:
    led = Ledger(backend.open_store(), keys)
    led.close()
    with pytest.raises(StoreUnavailable):
        led.open_merchant_account(MERCHANT, EUR)
    with pytest.raises(StoreUnavailable):
        led.merchant_account(MERCHANT)


def test_sqlite_that_cannot_open_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SqliteLedgerStore(tmp_path / "missing-dir" / "ledger.db")


def test_postgres_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        PostgresLedgerStore(f"host={tmp_path} port=1 dbname=none connect_timeout=2")


def test_postgres_sessions_commit_synchronously(pg_cluster: object) -> None:
    from tests.gateway.ledger.ledger_support import PgCluster

    assert isinstance(pg_cluster, PgCluster)
    conninfo = pg_cluster.new_schema()
    store = PostgresLedgerStore(conninfo)
    try:
        row = store.read(lambda tx: tx.one("SHOW synchronous_commit"))
        assert row is not None and row["synchronous_commit"] == "on"
    finally:
        store.close()
