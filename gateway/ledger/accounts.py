"""Card and merchant accounts: their records, their admin rules, and available credit.

A card account is a credit line: ``credit_limit`` in minor units of one currency, a status
(active, blocked, closed) and an expiry month. What the cardholder owes is
``debits_posted - credits_posted`` of its ledger account; what is on hold is the sum of
its pending holds, less the due ones a decision on the card releases first (``holds``).
Available credit is the limit minus both. A merchant account collects captures and pays
out credits; its balance is ``credits_posted - debits_posted``.

Status rules: block and unblock toggle between active and blocked; close is final. A
blocked or closed card takes no new authorization, but holds already granted can still
be captured (the merchant was promised them) and refunds still reach the card.
Lowering a limit below what is owed is allowed (banks do it); it only stops new debits.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

from gateway.ledger.errors import (
    AccountExists,
    AccountStateError,
    InvalidRequest,
    UnknownAccount,
    UnknownMerchant,
)
from gateway.ledger.holds import releasable_for_card
from gateway.ledger.pan import echoed
from gateway.ledger.store import Row, Transaction


class AccountStatus(enum.StrEnum):
    """Whether a card account takes new authorizations."""

    ACTIVE = "active"
    BLOCKED = "blocked"
    CLOSED = "closed"


class StatusChange(enum.StrEnum):
    """The admin actions on a card account's status."""

    BLOCK = "block"
    UNBLOCK = "unblock"
    CLOSE = "close"


@dataclass(frozen=True)
class CardAccount:
    """A card account as the issuer sees it; shows the masked PAN only."""

    account_id: str
    masked_pan: str
    expiry: str
    """``YYYYMM``: the card is valid through the end of that month (UTC)."""
    status: AccountStatus
    credit_limit: int
    currency: int
    posted_debt: int
    """What the cardholder owes: captures and credit reversals less refunds and reversals."""
    pending: int
    """Held by its pending holds, less the due ones a decision would release first."""
    available: int
    """``credit_limit - posted_debt - pending`` (negative after a limit is lowered)."""
    opened_at_ms: int


@dataclass(frozen=True)
class MerchantAccount:
    """A merchant's account with the bank."""

    account_id: str
    merchant_id: str
    currency: int
    balance: int
    """Captures less refunds, owed to the merchant."""
    pending: int
    """Authorized for this merchant and not yet captured or released (expired holds leave
    it when ``expire_holds`` posts their release)."""
    opened_at_ms: int


def validate_expiry(expiry: str, name: str = "expiry") -> None:
    """Raise InvalidRequest, naming the argument ``name``, unless ``expiry`` is ``YYYYMM``
    with a month from 01 to 12."""
    if (
        not isinstance(expiry, str)
        or len(expiry) != 6
        or not (expiry.isascii() and expiry.isdigit())
    ):
        raise InvalidRequest(f"{name} must be a card expiry, YYYYMM")
    if not 1 <= int(expiry[4:]) <= 12:
        raise InvalidRequest(f"{name} must have a month from 01 to 12")


def card_expired(expiry: str, now_ms: int) -> bool:
    """True once the expiry month is over (UTC)."""
    now = datetime.datetime.fromtimestamp(now_ms / 1000, tz=datetime.UTC)
    return int(expiry) < now.year * 100 + now.month


def effective_pending(tx: Transaction, card: Row, now_ms: int) -> int:
    """What the card's holds hold at ``now_ms`` as a decision would count it: its pending
    balance less the due holds a decision would release first (``holds.due_for_card``).

    Reads only: a decision releases those holds instead (``expiry``), so that what it took
    as expired stays expired for every later decision, whatever its clock. Due holds
    beyond that batch count here as they count in the decision, so the available credit a
    read shows is what an authorization would be granted. Only due, not yet released
    holds are read (a bounded index range), so the cost does not grow with the card's
    live holds.
    """
    return int(card["debits_pending"]) - releasable_for_card(tx, str(card["id"]), now_ms)


def available_credit(card: Row, pending: int) -> int:
    """Credit limit less posted debt less ``pending`` holds, for a locked card row."""
    debt = int(card["debits_posted"]) - int(card["credits_posted"])
    return int(card["credit_limit"]) - debt - pending


_CARD_COLUMNS = (
    "a.id, a.currency, a.debits_pending, a.debits_posted, a.credits_pending,"
    " a.credits_posted, a.opened_at_ms, c.masked_pan, c.expiry, c.status, c.credit_limit"
)


def lock_card(tx: Transaction, account_id: str) -> Row | None:
    """Read a card account with its balances, locking it until commit (see ``store``)."""
    return tx.one(
        f"SELECT {_CARD_COLUMNS} FROM accounts a JOIN card_accounts c ON c.account_id = a.id"  # noqa: S608  fixed columns, bound values
        f" WHERE a.id = ?{tx.row_lock}",
        account_id,
    )


def lock_card_by_pan_index(tx: Transaction, pan_index: bytes) -> Row | None:
    """``lock_card`` for the card whose PAN has this index (one statement, not two)."""
    return tx.one(
        f"SELECT {_CARD_COLUMNS} FROM accounts a JOIN card_accounts c ON c.account_id = a.id"  # noqa: S608  fixed columns, bound values
        f" WHERE c.pan_index = ?{tx.row_lock}",
        pan_index,
    )


def _card_record(tx: Transaction, row: Row, now_ms: int) -> CardAccount:
    pending = effective_pending(tx, row, now_ms)
    return CardAccount(
        account_id=str(row["id"]),
        masked_pan=str(row["masked_pan"]),
        expiry=str(row["expiry"]),
        status=AccountStatus(row["status"]),
        credit_limit=int(row["credit_limit"]),
        currency=int(row["currency"]),
        posted_debt=int(row["debits_posted"]) - int(row["credits_posted"]),
        pending=pending,
        available=available_credit(row, pending),
        opened_at_ms=int(row["opened_at_ms"]),
    )


def open_card(
    tx: Transaction,
    *,
    account_id: str,
    pan_index: bytes,
    pan_sealed: bytes,
    masked_pan: str,
    expiry: str,
    credit_limit: int,
    currency: int,
    now_ms: int,
    enrolment_hash: bytes | None = None,
) -> CardAccount:
    """Create a card account (with its enrolment code's hash, if it has one); raise
    AccountExists if the PAN already has one."""
    if tx.one("SELECT account_id FROM card_accounts WHERE pan_index = ?", pan_index) is not None:
        raise AccountExists("a card account for this PAN already exists")
    tx.run(
        "INSERT INTO accounts (id, kind, currency, opened_at_ms) VALUES (?, 'card', ?, ?)",
        account_id,
        currency,
        now_ms,
    )
    tx.run(
        "INSERT INTO card_accounts (account_id, pan_index, pan_sealed, masked_pan, expiry,"
        " status, credit_limit, enrolment_hash) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
        account_id,
        pan_index,
        pan_sealed,
        masked_pan,
        expiry,
        credit_limit,
        enrolment_hash,
    )
    return card_by_id(tx, account_id, now_ms)


_NEXT_STATUS = {
    (StatusChange.BLOCK, AccountStatus.ACTIVE): AccountStatus.BLOCKED,
    (StatusChange.BLOCK, AccountStatus.BLOCKED): AccountStatus.BLOCKED,
    (StatusChange.UNBLOCK, AccountStatus.BLOCKED): AccountStatus.ACTIVE,
    (StatusChange.UNBLOCK, AccountStatus.ACTIVE): AccountStatus.ACTIVE,
    (StatusChange.CLOSE, AccountStatus.ACTIVE): AccountStatus.CLOSED,
    (StatusChange.CLOSE, AccountStatus.BLOCKED): AccountStatus.CLOSED,
    (StatusChange.CLOSE, AccountStatus.CLOSED): AccountStatus.CLOSED,
}


def change_card_status(
    tx: Transaction, *, account_id: str, change: StatusChange, now_ms: int
) -> CardAccount:
    """Block, unblock or close a card account; a closed account stays closed."""
    row = lock_card(tx, account_id)
    if row is None:
        raise UnknownAccount(f"no card account {echoed(account_id)}")
    current = AccountStatus(row["status"])
    target = _NEXT_STATUS.get((change, current))
    if target is None:
        raise AccountStateError(
            f"cannot {change.value} card account {echoed(account_id)}: it is closed"
        )
    tx.run("UPDATE card_accounts SET status = ? WHERE account_id = ?", target.value, account_id)
    return card_by_id(tx, account_id, now_ms)


def _lock_changeable_card(tx: Transaction, account_id: str) -> None:
    """Lock a card account whose terms may still change; raise UnknownAccount, or
    AccountStateError for a closed one."""
    row = lock_card(tx, account_id)
    if row is None:
        raise UnknownAccount(f"no card account {echoed(account_id)}")
    if row["status"] == AccountStatus.CLOSED.value:
        raise AccountStateError(f"card account {echoed(account_id)} is closed")


def set_credit_limit(
    tx: Transaction, *, account_id: str, credit_limit: int, now_ms: int
) -> CardAccount:
    """Change a card account's credit limit (a closed account's cannot change)."""
    _lock_changeable_card(tx, account_id)
    tx.run(
        "UPDATE card_accounts SET credit_limit = ? WHERE account_id = ?", credit_limit, account_id
    )
    return card_by_id(tx, account_id, now_ms)


def card_by_id(tx: Transaction, account_id: str, now_ms: int) -> CardAccount:
    """A card account by id; raise UnknownAccount."""
    row = tx.one(
        f"SELECT {_CARD_COLUMNS} FROM accounts a JOIN card_accounts c ON c.account_id = a.id"  # noqa: S608  fixed columns, bound values
        " WHERE a.id = ?",
        account_id,
    )
    if row is None:
        raise UnknownAccount(f"no card account {echoed(account_id)}")
    return _card_record(tx, row, now_ms)


def _card_row_by_index(tx: Transaction, pan_index: bytes) -> Row:
    """A card account's row by PAN index, with its enrolment code's hash; raise
    UnknownAccount (naming no PAN)."""
    row = tx.one(
        f"SELECT {_CARD_COLUMNS}, c.enrolment_hash FROM accounts a"  # noqa: S608  fixed columns, bound values
        " JOIN card_accounts c ON c.account_id = a.id WHERE c.pan_index = ?",
        pan_index,
    )
    if row is None:
        raise UnknownAccount("no card account for this PAN")
    return row


def card_by_index(tx: Transaction, pan_index: bytes, now_ms: int) -> CardAccount:
    """A card account by PAN index; raise UnknownAccount (naming no PAN)."""
    return _card_record(tx, _card_row_by_index(tx, pan_index), now_ms)


def card_enrolment_by_index(
    tx: Transaction, pan_index: bytes, now_ms: int
) -> tuple[CardAccount, bytes | None]:
    """A card account by PAN index with its enrolment code's hash (None: the card has no
    code); raise UnknownAccount (naming no PAN)."""
    row = _card_row_by_index(tx, pan_index)
    held = row["enrolment_hash"]
    return _card_record(tx, row, now_ms), None if held is None else bytes(held)


def set_enrolment_hash(
    tx: Transaction, *, account_id: str, enrolment_hash: bytes, now_ms: int
) -> CardAccount:
    """Give a card account a new enrolment code's hash, replacing any earlier one (a
    closed account's cannot change: it registers nothing again)."""
    _lock_changeable_card(tx, account_id)
    tx.run(
        "UPDATE card_accounts SET enrolment_hash = ? WHERE account_id = ?",
        enrolment_hash,
        account_id,
    )
    return card_by_id(tx, account_id, now_ms)


def sealed_pan(tx: Transaction, account_id: str) -> bytes:
    """The sealed PAN stored on a card account; raise UnknownAccount."""
    row = tx.one("SELECT pan_sealed FROM card_accounts WHERE account_id = ?", account_id)
    if row is None:
        raise UnknownAccount(f"no card account {echoed(account_id)}")
    return bytes(row["pan_sealed"])


def open_merchant(
    tx: Transaction, *, account_id: str, merchant_id: str, currency: int, now_ms: int
) -> MerchantAccount:
    """Create a merchant account; raise AccountExists if the merchant has one."""
    if tx.one("SELECT 1 AS found FROM merchant_accounts WHERE merchant_id = ?", merchant_id):
        raise AccountExists(f"merchant {echoed(merchant_id)} already has an account")
    tx.run(
        "INSERT INTO accounts (id, kind, currency, opened_at_ms) VALUES (?, 'merchant', ?, ?)",
        account_id,
        currency,
        now_ms,
    )
    tx.run(
        "INSERT INTO merchant_accounts (account_id, merchant_id) VALUES (?, ?)",
        account_id,
        merchant_id,
    )
    return merchant_by_id(tx, merchant_id)


def merchant_row(tx: Transaction, merchant_id: str, *, lock: bool = False) -> Row:
    """A merchant's ledger account row (optionally locked); raise UnknownMerchant."""
    row = tx.one(
        "SELECT a.id, a.currency, a.debits_pending, a.debits_posted, a.credits_pending,"  # noqa: S608  lock suffix only
        " a.credits_posted, a.opened_at_ms, m.merchant_id FROM accounts a"
        " JOIN merchant_accounts m ON m.account_id = a.id"
        f" WHERE m.merchant_id = ?{tx.row_lock if lock else ''}",
        merchant_id,
    )
    if row is None:
        raise UnknownMerchant(f"merchant {echoed(merchant_id)} has no account")
    return row


def merchant_by_id(tx: Transaction, merchant_id: str) -> MerchantAccount:
    """A merchant account by merchant id; raise UnknownMerchant."""
    row = merchant_row(tx, merchant_id)
    return MerchantAccount(
        account_id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        currency=int(row["currency"]),
        balance=int(row["credits_posted"]) - int(row["debits_posted"]),
        pending=int(row["credits_pending"]),
        opened_at_ms=int(row["opened_at_ms"]),
    )
