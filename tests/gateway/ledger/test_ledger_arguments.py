"""The checks ``Ledger`` makes on its arguments before any store work (every store).

Each refusal is an InvalidRequest naming the argument that failed, and leaves the books
as they were: the card's pending amount does not move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from gateway.ledger import (
    AuthorizationReversed,
    Authorized,
    CaptureItem,
    CreditItem,
    InvalidRequest,
    Ledger,
    LedgerKeys,
    PostgresLedgerStore,
    PostingOutcome,
    ReversalItem,
    StoreError,
    new_hold_id,
)
from gateway.ledger.limits import (
    EXPIRE_BATCH,
    MAX_AMOUNT,
    MAX_HOLD_LIFETIME_MS,
    MAX_ITEMS_PER_REQUEST,
)
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    Bank,
    FakeClock,
    PgCluster,
)

R = TypeVar("R")


def _hold(bank: Bank, amount: int = 1000) -> str:
    outcome = bank.authorize(PAN_A, amount)
    assert isinstance(outcome, Authorized), outcome
    return outcome.hold_id


def _refused(bank: Bank, call: Callable[[], object], argument: str) -> None:
    """``call`` raises InvalidRequest about ``argument`` and leaves PAN_A as it was."""
    before = bank.ledger.find_card_account(PAN_A)
    with pytest.raises(InvalidRequest, match=rf"^{argument}\b"):
        call()
    assert bank.ledger.find_card_account(PAN_A) == before


# -- authorize


@pytest.mark.parametrize(
    "expiry",
    [
        lambda now: now,  # not in the future
        lambda now: now - 1,
        lambda now: now + MAX_HOLD_LIFETIME_MS + 1,  # longer than any bank holds
        lambda now: 253_402_300_799_000,  # the year 9999
        lambda now: 2**63,  # past a 64-bit column
        lambda now: now + 1000.5,
        lambda now: str(now + 1000),
        lambda now: True,
    ],
    ids=["now", "past", "too-long", "year-9999", "2**63", "float", "str", "bool"],
)
def test_a_hold_expiry_is_an_integer_time_within_the_longest_hold(
    bank: Bank, clock: FakeClock, expiry: Callable[[int], Any]
) -> None:
    at = expiry(clock.now_ms)
    _refused(bank, lambda: bank.authorize(PAN_A, 100, expires_at_ms=at), "hold_expires_at_ms")


def test_the_longest_hold_is_allowed(bank: Bank, clock: FakeClock) -> None:
    outcome = bank.authorize(PAN_A, 100, expires_at_ms=clock.now_ms + MAX_HOLD_LIFETIME_MS)
    assert isinstance(outcome, Authorized)
    assert outcome.expires_at_ms == clock.now_ms + MAX_HOLD_LIFETIME_MS


def _authorize_with(bank: Bank, **change: Any) -> bytes:
    arguments: dict[str, Any] = {
        "pan": PAN_A,
        "pan_expiry": EXPIRY,
        "amount": 100,
        "currency": EUR,
        "merchant_id": MERCHANT,
        "xid": bank.fresh("xid"),
        "pi_digest": bank.fresh("pi"),
        "rrpid": bank.fresh("rrpid"),
        "request_digest": bank.fresh("digest"),
        "respond": bank.respond,
    }
    return bank.ledger.authorize(**(arguments | change))


@pytest.mark.parametrize("hold_id", ["", 12345, b"hold-1"], ids=["empty", "int", "bytes"])
def test_a_chosen_hold_id_is_a_non_empty_string(bank: Bank, hold_id: object) -> None:
    _refused(bank, lambda: _authorize_with(bank, hold_id=hold_id), "hold_id")


@pytest.mark.parametrize("capture_now", ["no", 1, None], ids=["str", "int", "none"])
def test_capture_now_is_a_bool(bank: Bank, capture_now: object) -> None:
    _refused(bank, lambda: _authorize_with(bank, capture_now=capture_now), "capture_now")


def test_a_repeated_hold_id_fails_and_changes_nothing(bank: Bank) -> None:
    hold = _hold(bank)
    pending = bank.ledger.find_card_account(PAN_A).pending
    with pytest.raises(StoreError, match=r"holds\.id|holds_pkey"):
        _authorize_with(bank, hold_id=hold)
    assert bank.ledger.find_card_account(PAN_A).pending == pending


# -- a PAN


@pytest.mark.parametrize(
    "call",
    [
        lambda ledger: ledger.find_card_account(int(PAN_A)),
        lambda ledger: ledger.open_card_account(int(PAN_A), EXPIRY, 100, EUR),
        lambda ledger: ledger.find_card_account(None),
    ],
    ids=["find", "open", "none"],
)
def test_a_pan_is_a_string(bank: Bank, call: Callable[[Ledger], object]) -> None:
    _refused(bank, lambda: call(bank.ledger), "pan")


def test_a_pan_given_as_a_number_to_authorize_is_refused(bank: Bank) -> None:
    _refused(bank, lambda: _authorize_with(bank, pan=int(PAN_A)), "pan")


# -- settlement items


@pytest.mark.parametrize(
    ("operation", "item"),
    [
        ("capture", lambda hold: ReversalItem(hold, b"rrpid")),
        ("capture", lambda hold: CreditItem(hold, 100, EUR)),
        ("capture", lambda hold: (hold, 100, EUR)),
        ("credit", lambda hold: CaptureItem(hold, 100, EUR)),
        ("reverse_capture", lambda hold: CaptureItem(hold, 100, EUR)),
        ("reverse_credit", lambda hold: CreditItem(hold, 100, EUR)),
    ],
    ids=[
        "capture-reversal",
        "capture-credit",
        "capture-tuple",
        "credit-capture",
        "reverse-capture-capture",
        "reverse-credit-credit",
    ],
)
def test_items_are_of_the_class_the_operation_takes(
    bank: Bank, operation: str, item: Callable[[str], object]
) -> None:
    hold = _hold(bank)
    method = getattr(bank.ledger, operation)
    _refused(bank, lambda: bank.call(method, merchant_id=MERCHANT, items=[item(hold)]), "items")
    assert bank.ledger.hold(hold).captured == 0


@pytest.mark.parametrize("count", [MAX_ITEMS_PER_REQUEST + 1, 0], ids=["too-many", "none"])
def test_a_request_carries_1_to_the_maximum_items(bank: Bank, count: int) -> None:
    hold = _hold(bank)
    items = [CaptureItem(hold, 1, EUR)] + [
        CaptureItem(f"hold-{i}", 1, EUR) for i in range(1, MAX_ITEMS_PER_REQUEST + 1)
    ]
    many = items[:count]
    _refused(
        bank, lambda: bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=many), "items"
    )
    assert bank.ledger.hold(hold).captured == 0


def test_the_maximum_items_are_decided(bank: Bank) -> None:
    hold = _hold(bank)
    items = [CaptureItem(hold, 1, EUR)] + [
        CaptureItem(f"hold-{i}", 1, EUR) for i in range(1, MAX_ITEMS_PER_REQUEST)
    ]
    outcome = bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=items)
    assert isinstance(outcome, PostingOutcome) and len(outcome.items) == MAX_ITEMS_PER_REQUEST
    assert bank.ledger.hold(hold).captured == 1


@pytest.mark.parametrize(
    "currency", [0, 1000, 999, "978", True], ids=["0", "1000", "no-minor-unit", "str", "bool"]
)
@pytest.mark.parametrize(
    ("operation", "item_class"), [("capture", CaptureItem), ("credit", CreditItem)]
)
def test_an_item_has_a_currency_code(
    bank: Bank, operation: str, item_class: type[CaptureItem | CreditItem], currency: object
) -> None:
    hold = _hold(bank)
    items = [item_class(hold, 100, currency)]  # type: ignore[arg-type]
    method = getattr(bank.ledger, operation)
    _refused(bank, lambda: bank.call(method, merchant_id=MERCHANT, items=items), "currency")


@pytest.mark.parametrize("original", [b"", b"r" * 65, "rrpid"], ids=["empty", "65-bytes", "str"])
@pytest.mark.parametrize("operation", ["reverse_capture", "reverse_credit"])
def test_a_reversal_names_its_original_by_an_rrpid(
    bank: Bank, operation: str, original: object
) -> None:
    hold = _hold(bank)
    items = [ReversalItem(hold, original)]  # type: ignore[arg-type]
    method = getattr(bank.ledger, operation)
    _refused(bank, lambda: bank.call(method, merchant_id=MERCHANT, items=items), "original_rrpid")


# -- authorization reversal, credit limit


@pytest.mark.parametrize("new_amount", [-1, MAX_AMOUNT + 1], ids=["below-0", "above-max"])
def test_a_reversal_lowers_to_0_to_the_maximum_amount(bank: Bank, new_amount: int) -> None:
    hold = _hold(bank)

    def reverse() -> object:
        return bank.call(
            bank.ledger.reverse_authorization,
            merchant_id=MERCHANT,
            hold_id=hold,
            new_amount=new_amount,
        )

    _refused(bank, reverse, "new_amount")
    assert bank.ledger.hold(hold).amount == 1000


def test_a_reversal_to_0_is_allowed(bank: Bank) -> None:
    hold = _hold(bank)
    outcome = bank.call(
        bank.ledger.reverse_authorization, merchant_id=MERCHANT, hold_id=hold, new_amount=0
    )
    assert isinstance(outcome, AuthorizationReversed)


@pytest.mark.parametrize("limit", [-1, MAX_AMOUNT + 1, 1.5], ids=["below-0", "above-max", "float"])
def test_a_credit_limit_is_0_to_the_maximum_amount(bank: Bank, limit: object) -> None:
    card = bank.ledger.find_card_account(PAN_A)
    _refused(
        bank,
        lambda: bank.ledger.set_credit_limit(card.account_id, limit),  # type: ignore[arg-type]
        "credit_limit",
    )


# -- page limits


@pytest.mark.parametrize("limit", [0, EXPIRE_BATCH + 1, -1], ids=["0", "above-max", "negative"])
def test_an_expiry_sweep_releases_1_to_its_batch_of_holds(bank: Bank, limit: int) -> None:
    _hold(bank)
    _refused(bank, lambda: bank.ledger.expire_holds(limit), "limit")


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda ledger: ledger.expire_holds("5"), "limit"),
        (lambda ledger: ledger.expire_holds(1.5), "limit"),
        (lambda ledger: ledger.expire_holds(True), "limit"),
        (lambda ledger: ledger.batch_details(MERCHANT, "b", max_items="10"), "max_items"),
        (lambda ledger: ledger.batch_details(MERCHANT, "b", max_items=2.5), "max_items"),
        (lambda ledger: ledger.batch_details(MERCHANT, "b", max_items=True), "max_items"),
        (lambda ledger: ledger.batch_details(MERCHANT, "b", starting_point="0"), "starting_point"),
    ],
    ids=["limit-str", "limit-float", "limit-bool", "max-str", "max-float", "max-bool", "start-str"],
)
def test_page_limits_are_integers(bank: Bank, call: Callable[[Ledger], object], name: str) -> None:
    _hold(bank)
    _refused(bank, lambda: call(bank.ledger), name)


# -- ids: what PostgreSQL's text can hold, so that every store answers alike

# A merchant's batch ids arrive in protobuf strings, which may carry a NUL: SQLite's text
# holds it (and finds no such batch), PostgreSQL's cannot (a database error).
_NUL = "batch\x00"


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (
            lambda bank, hold: bank.call(
                bank.ledger.capture, merchant_id=MERCHANT,
                items=[CaptureItem(hold, 10, EUR, batch_id=_NUL)],
            ),
            "batch_id",
        ),
        (
            lambda bank, hold: bank.call(
                bank.ledger.credit, merchant_id=MERCHANT,
                items=[CreditItem(hold, 10, EUR, batch_id=_NUL)],
            ),
            "batch_id",
        ),
        (
            lambda bank, hold: bank.call(
                bank.ledger.reverse_capture, merchant_id=MERCHANT,
                items=[ReversalItem(hold, b"cap-1", batch_id=_NUL)],
            ),
            "batch_id",
        ),
        (lambda bank, hold: bank.call(bank.ledger.close_batch, MERCHANT, _NUL), "batch_id"),
        (lambda bank, hold: bank.call(bank.ledger.purge_batch, MERCHANT, _NUL), "batch_id"),
        (lambda bank, hold: bank.ledger.batch_summary(MERCHANT, _NUL), "batch_id"),
        (lambda bank, hold: bank.ledger.batch_report(MERCHANT, _NUL), "batch_id"),
        (lambda bank, hold: bank.ledger.batch_details(MERCHANT, _NUL), "batch_id"),
        (lambda bank, hold: bank.ledger.batch_summary("shop\x00"), "merchant_id"),
        (lambda bank, hold: bank.ledger.merchant_account("shop\x00"), "merchant_id"),
        (lambda bank, hold: bank.ledger.hold(hold + "\x00"), "hold_id"),
        (lambda bank, hold: bank.ledger.card_account("card\x00"), "account_id"),
    ],
    ids=[
        "capture", "credit", "reversal", "close", "purge", "summary", "report", "details",
        "summary-merchant", "merchant-account", "hold", "card-account",
    ],
)  # fmt: skip
def test_an_id_with_a_nul_is_refused_on_every_store(
    bank: Bank, call: Callable[[Bank, str], object], name: str
) -> None:
    hold = _hold(bank)
    _refused(bank, lambda: call(bank, hold), name)
    assert bank.ledger.hold(hold).captured == 0


# -- PostgreSQL: which unique-key failures are retried


class _CountingStore(PostgresLedgerStore):
    """A PostgreSQL store that counts the attempts of each operation it executes."""

    attempts = 0

    def execute(self, work: Callable[[Transaction], R]) -> R:
        def counted(tx: Transaction) -> R:
            self.attempts += 1
            return work(tx)

        self.attempts = 0
        return super().execute(counted)


def test_postgres_does_not_retry_a_repeated_hold_id(pg_cluster: PgCluster) -> None:
    store = _CountingStore(pg_cluster.new_schema())
    ledger = Ledger(store, LedgerKeys.generate(), clock=FakeClock())
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
        bank = Bank(ledger)
        hold = new_hold_id()
        _authorize_with(bank, hold_id=hold)
        with pytest.raises(StoreError, match="holds_pkey"):
            _authorize_with(bank, hold_id=hold)
        assert store.attempts == 1  # the caller's mistake: no other attempt can cure it
    finally:
        ledger.close()


def test_postgres_still_retries_a_race_on_one_rrpid(pg_cluster: PgCluster) -> None:
    store = _CountingStore(pg_cluster.new_schema())
    insert = (
        "INSERT INTO requests (rrpid, request_digest, response, created_at_ms) VALUES (?, ?, ?, ?)"
    )
    try:
        store.execute(lambda tx: tx.run(insert, b"rrpid", b"digest", b"answer", 1))

        def loses_the_race_once(tx: Transaction) -> str:
            if store.attempts == 1:  # another host stored this RRPID first
                tx.run(insert, b"rrpid", b"digest", b"other answer", 2)
            return "retried"

        assert store.execute(loses_the_race_once) == "retried"
        assert store.attempts == 2
    finally:
        store.close()
