"""The issuer ledger: the one object the gateway calls.

``Ledger`` validates arguments, turns a PAN into its index and sealed form (the stores
never see a PAN), stamps the time from its clock, and hands each operation to its store.

Money operations (authorize, reversals, capture, credit, batch admin) are idempotent on
the RRPID; ``Ledger`` inherits them, by domain, from ``money_authorization``,
``money_settlement`` and ``money_batches``, and ``money`` states the contract.

Account admin (open, block, close, limits) is durable but not RRPID-keyed: it comes from
the bank's own tooling, not from SET messages. It stays here, with the holds and the books.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from gateway.ledger import accounts, books, expiry, holds, retention
from gateway.ledger.accounts import CardAccount, MerchantAccount, StatusChange
from gateway.ledger.books import CurrencyTotals
from gateway.ledger.enrolment import CardEnrolment, normalize_enrolment_code
from gateway.ledger.errors import InvalidRequest
from gateway.ledger.holds import Hold
from gateway.ledger.identifiers import new_id
from gateway.ledger.limits import (
    EXPIRE_BATCH,
    MAX_HOLD_LIFETIME_MS,
    check_amount,
    check_currency,
    check_expire_limit,
    check_text,
)
from gateway.ledger.money_authorization import AuthorizationOperations
from gateway.ledger.money_batches import BatchOperations
from gateway.ledger.money_settlement import SettlementOperations
from gateway.ledger.pan import (
    LedgerKeys,
    card_refusals_key,
    enrolment_code_hash,
    mask_pan,
    open_pan,
    pan_index,
    seal_pan,
    validate_pan,
)
from gateway.ledger.reports import MerchantHolds, merchant_holds
from gateway.ledger.retention import RETENTION_BATCH, Prunable, Pruned, check_retention_days
from gateway.ledger.store import LedgerStore, Row, Transaction
from gateway.ledger.sweeper import SWEEP_INTERVAL_SECONDS, BatchObserver, HoldSweeper

# How long an authorization holds funds unless the caller says otherwise: seven days,
# the usual scheme lifetime of a card-not-present authorization.
HOLD_LIFETIME_MS = 7 * 24 * 3600 * 1000

Clock = Callable[[], int]
"""Returns the current time in Unix milliseconds."""


def wall_clock_ms() -> int:
    """The system clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class LedgerConfig:
    """Ledger policy (defaults as the module constants say)."""

    hold_lifetime_ms: int = HOLD_LIFETIME_MS
    retention_days: int | None = None
    """How long ``requests`` and dead ``pi_uses`` rows are kept (``retention``); None: the
    ledger prunes nothing on its own (``setpay bank prune-ledger`` still may)."""

    def __post_init__(self) -> None:
        """Refuse a hold lifetime that would expire holds at once, or outlast the longest
        hold a bank allows (``limits.MAX_HOLD_LIFETIME_MS``), and a retention outside
        ``retention``'s bounds."""
        if self.retention_days is not None:
            try:
                check_retention_days(self.retention_days)
            except ValueError as exc:
                raise ValueError(f"retention_days {exc}") from None
        lifetime = self.hold_lifetime_ms
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            raise ValueError("hold_lifetime_ms must be an integer")
        if not 0 < lifetime <= MAX_HOLD_LIFETIME_MS:
            raise ValueError(f"hold_lifetime_ms must be 1 to {MAX_HOLD_LIFETIME_MS}")


# What the ledger hands its store is always a ``partial`` of a module-level function of
# ``gateway.ledger``, never a lambda: a store may be another process (``service``), and
# such a partial travels there by value (``wire``, hence this module's place among its
# ``SHIPPED_MODULES``).


def _answers(tx: Transaction) -> Row | None:
    return tx.one("SELECT 1 AS ok")


class Ledger(AuthorizationOperations, SettlementOperations, BatchOperations):
    """The issuer ledger over a store: accounts, authorizations, settlement, batches."""

    def __init__(
        self,
        store: LedgerStore,
        keys: LedgerKeys,
        *,
        config: LedgerConfig | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        """Use ``store`` with ``keys`` protecting PANs; ``clock`` is injectable for tests."""
        self._store = store
        self._keys = keys
        self._config = config or LedgerConfig()
        self._clock = clock
        self._sweeper: HoldSweeper | None = None

    def close(self) -> None:
        """Stop the hold sweeper, if one runs, then close the store (queued work is
        committed first)."""
        if self._sweeper is not None:
            self._sweeper.stop()
        self._store.close()

    # Card and merchant accounts.

    def open_card_account(
        self,
        pan: str,
        expiry: str,
        credit_limit: int,
        currency: int,
        *,
        enrolment_code: str | None = None,
    ) -> CardAccount:
        """Open an active card account, with ``enrolment_code`` (``enrolment``) if given;
        raise AccountExists if the PAN has one."""
        validate_pan(pan)
        accounts.validate_expiry(expiry)
        check_amount("credit_limit", credit_limit, allow_zero=True)
        check_currency(currency)
        account_id = new_id("card")
        index = pan_index(self._keys, pan)
        sealed = seal_pan(self._keys, account_id, pan)
        masked = mask_pan(pan)
        code_hash = None
        if enrolment_code is not None:
            code_hash = self._enrolment_hash(account_id, enrolment_code)
        now = self._clock()
        return self._store.execute(
            partial(
                accounts.open_card,
                account_id=account_id,
                pan_index=index,
                pan_sealed=sealed,
                masked_pan=masked,
                expiry=expiry,
                credit_limit=credit_limit,
                currency=currency,
                now_ms=now,
                enrolment_hash=code_hash,
            )
        )

    def _enrolment_hash(self, account_id: str, code: str) -> bytes:
        canonical = normalize_enrolment_code(code)
        if canonical is None:
            raise InvalidRequest("the enrolment code is not one enrolment.new_enrolment_code makes")
        return enrolment_code_hash(self._keys, account_id, canonical)

    def set_enrolment_code(self, account_id: str, enrolment_code: str) -> CardAccount:
        """Give a card account ``enrolment_code``: the one it had before matches no more;
        raise AccountStateError if the account is closed."""
        check_text("account_id", account_id)
        code_hash = self._enrolment_hash(account_id, enrolment_code)
        now = self._clock()
        return self._store.execute(
            partial(
                accounts.set_enrolment_hash,
                account_id=account_id,
                enrolment_hash=code_hash,
                now_ms=now,
            )
        )

    def check_enrolment(self, pan: str, enrolment_code: str | None) -> CardEnrolment:
        """The card account of ``pan``, whether it has an enrolment code and whether
        ``enrolment_code`` is it (compared in constant time; text that is no code, or
        None, matches nothing); raise UnknownAccount."""
        validate_pan(pan)
        index = pan_index(self._keys, pan)
        now = self._clock()
        account, held = self._store.read(
            partial(accounts.card_enrolment_by_index, pan_index=index, now_ms=now)
        )
        if held is None:
            return CardEnrolment(account, has_code=False, code_matches=False)
        canonical = normalize_enrolment_code(enrolment_code or "")
        # A wrong-shaped code is hashed all the same (as the empty text), so a refusal
        # takes the same time whatever was sent.
        given = enrolment_code_hash(self._keys, account.account_id, canonical or "")
        matches = hmac.compare_digest(given, held) and canonical is not None
        return CardEnrolment(account, has_code=True, code_matches=matches)

    def _change_status(self, account_id: str, change: StatusChange) -> CardAccount:
        check_text("account_id", account_id)
        now = self._clock()
        return self._store.execute(
            partial(accounts.change_card_status, account_id=account_id, change=change, now_ms=now)
        )

    def block_card_account(self, account_id: str) -> CardAccount:
        """Stop new authorizations on a card (captures of existing holds still post)."""
        return self._change_status(account_id, StatusChange.BLOCK)

    def unblock_card_account(self, account_id: str) -> CardAccount:
        """Let a blocked card authorize again; raise AccountStateError if it is closed."""
        return self._change_status(account_id, StatusChange.UNBLOCK)

    def close_card_account(self, account_id: str) -> CardAccount:
        """Close a card account for good."""
        return self._change_status(account_id, StatusChange.CLOSE)

    def set_credit_limit(self, account_id: str, credit_limit: int) -> CardAccount:
        """Change a card's credit limit; raise AccountStateError if it is closed."""
        check_text("account_id", account_id)
        check_amount("credit_limit", credit_limit, allow_zero=True)
        now = self._clock()
        return self._store.execute(
            partial(
                accounts.set_credit_limit,
                account_id=account_id,
                credit_limit=credit_limit,
                now_ms=now,
            )
        )

    def card_account(self, account_id: str) -> CardAccount:
        """A card account by id; raise UnknownAccount."""
        check_text("account_id", account_id)
        now = self._clock()
        return self._store.read(partial(accounts.card_by_id, account_id=account_id, now_ms=now))

    def card_refusals_key(self, pan: str) -> bytes:
        """A keyed hash of ``pan`` for the CA's count of refused registrations
        (``pan.card_refusals_key``): it recognises a card without holding its number, and
        is not the ledger's own index, so the two stores share no value."""
        validate_pan(pan)
        return card_refusals_key(self._keys, pan)

    def find_card_account(self, pan: str) -> CardAccount:
        """A card account by PAN; raise UnknownAccount."""
        validate_pan(pan)
        index = pan_index(self._keys, pan)
        now = self._clock()
        return self._store.read(partial(accounts.card_by_index, pan_index=index, now_ms=now))

    def reveal_pan(self, account_id: str) -> str:
        """Decrypt a card account's PAN (issuer use only; raise PanUnreadable if tampered)."""
        check_text("account_id", account_id)
        sealed = self._store.read(partial(accounts.sealed_pan, account_id=account_id))
        return open_pan(self._keys, account_id, sealed)

    def open_merchant_account(self, merchant_id: str, currency: int) -> MerchantAccount:
        """Open a merchant account; raise AccountExists if the merchant has one."""
        check_text("merchant_id", merchant_id)
        check_currency(currency)
        account_id = new_id("merchant")
        now = self._clock()
        return self._store.execute(
            partial(
                accounts.open_merchant,
                account_id=account_id,
                merchant_id=merchant_id,
                currency=currency,
                now_ms=now,
            )
        )

    def merchant_account(self, merchant_id: str) -> MerchantAccount:
        """A merchant account by merchant id; raise UnknownMerchant."""
        check_text("merchant_id", merchant_id)
        return self._store.read(partial(accounts.merchant_by_id, merchant_id=merchant_id))

    # Holds and the books.

    def hold(self, hold_id: str) -> Hold:
        """A hold and what happened against it; raise UnknownHold."""
        check_text("hold_id", hold_id)
        now = self._clock()
        return self._store.read(partial(holds.hold_by_id, hold_id=hold_id, now_ms=now))

    def expire_holds(self, limit: int = EXPIRE_BATCH) -> int:
        """Post the release of up to ``limit`` expired holds; return how many (call often)."""
        check_expire_limit(limit)
        now = self._clock()
        return self._store.execute(partial(expiry.expire_holds, now_ms=now, limit=limit))

    def has_due_holds(self) -> bool:
        """Whether some hold is past its expiry and its release not yet posted (a read)."""
        return self._store.read(partial(expiry.any_due, now_ms=self._clock()))

    def start_hold_sweeper(
        self,
        interval_seconds: float = SWEEP_INTERVAL_SECONDS,
        observer: BatchObserver | None = None,
    ) -> HoldSweeper:
        """Release due holds now and every ``interval_seconds``, on a thread of its own,
        until ``close`` (``sweeper``); ``observer`` hears each batch's count."""
        if self._sweeper is not None:
            raise RuntimeError("this ledger already runs a hold sweeper")
        self._sweeper = HoldSweeper(self, interval_seconds=interval_seconds, observer=observer)
        return self._sweeper.start()

    # Retention of stored answers and used XIDs (``retention``).

    @property
    def retention_days(self) -> int | None:
        """The retention the sweeper prunes to, if the ledger was given one."""
        return self._config.retention_days

    def _cutoff(self, retention_days: int) -> int:
        try:
            days = check_retention_days(retention_days)
        except ValueError as exc:
            raise InvalidRequest(f"retention_days {exc}") from None
        return self._clock() - days * retention.DAY_MS

    def prune_requests(self, retention_days: int, limit: int = RETENTION_BATCH) -> Pruned:
        """One transaction: drop stored answers older than ``retention_days`` that may go."""
        retention.check_prune_limit(limit)
        cutoff = self._cutoff(retention_days)
        return self._store.execute(partial(retention.prune_requests, cutoff_ms=cutoff, limit=limit))

    def prune_pi_uses(self, retention_days: int, limit: int = RETENTION_BATCH) -> Pruned:
        """One transaction: drop XIDs whose PI has been unapprovable for ``retention_days``."""
        retention.check_prune_limit(limit)
        cutoff = self._cutoff(retention_days)
        return self._store.execute(partial(retention.prune_pi_uses, cutoff_ms=cutoff, limit=limit))

    def has_prunable(self, retention_days: int) -> tuple[bool, bool]:
        """Whether ``requests`` and ``pi_uses`` hold rows to drop (one read)."""
        cutoff = self._cutoff(retention_days)
        return self._store.read(partial(retention.anything_left, cutoff_ms=cutoff))

    def prunable(self, retention_days: int) -> Prunable:
        """How many rows a prune now would drop, by table (a read of whole index ranges)."""
        cutoff = self._cutoff(retention_days)
        return self._store.read(partial(retention.count_prunable, cutoff_ms=cutoff))

    def totals(self) -> tuple[CurrencyTotals, ...]:
        """The four balance sums per currency."""
        return self._store.read(books.totals)

    def check_balanced(self) -> None:
        """Raise LedgerImbalance unless the books, balances and holds all agree."""
        self._store.read(books.check_balanced)

    def check_health(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial read."""
        self._store.read(_answers)

    def merchant_holds(self, merchant_id: str) -> MerchantHolds:
        """How many holds were ever made for a merchant, and their amounts summed (a read,
        ``reports``); raise UnknownMerchant."""
        check_text("merchant_id", merchant_id)
        return self._store.read(partial(merchant_holds, merchant_id=merchant_id))
