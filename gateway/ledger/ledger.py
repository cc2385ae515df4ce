"""The issuer ledger: the one object the gateway calls.

``Ledger`` validates arguments, turns a PAN into its index and sealed form (the stores
never see a PAN), stamps the time from its clock, and hands each operation to its store.

Money operations (authorize, reversals, capture, credit, batch admin) are idempotent on
the RRPID: they take ``rrpid``, ``request_digest`` and ``respond``. ``respond`` gets the
``Outcome`` and returns the signed response bytes; the ledger stores them in the same
transaction as the state change and returns them only once that transaction is durably
committed. A retry with the same RRPID and digest returns the stored bytes and does
nothing else; the same RRPID with another digest raises RrpidReused.

Account admin (open, block, close, limits) is durable but not RRPID-keyed: it comes from
the bank's own tooling, not from SET messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from gateway.ledger import accounts, authorization, batches, books, holds, idempotency, settlement
from gateway.ledger.accounts import CardAccount, MerchantAccount, StatusChange
from gateway.ledger.batches import BatchPage
from gateway.ledger.books import CurrencyTotals
from gateway.ledger.errors import InvalidRequest
from gateway.ledger.holds import Hold
from gateway.ledger.identifiers import new_id, new_ordered_id
from gateway.ledger.limits import (
    EXPIRE_BATCH,
    check_amount,
    check_bytes,
    check_currency,
    check_expire_limit,
    check_items,
    check_page,
    check_text,
)
from gateway.ledger.outcomes import (
    GATEWAY_DECLINES,
    BatchSummary,
    Decline,
    Declined,
    Outcome,
    Responder,
)
from gateway.ledger.pan import LedgerKeys, mask_pan, open_pan, pan_index, seal_pan, validate_pan
from gateway.ledger.settlement import CaptureItem, CreditItem, ReversalItem
from gateway.ledger.store import LedgerStore, Row, Transaction

# How long an authorization holds funds unless the caller says otherwise: seven days,
# the usual scheme lifetime of a card-not-present authorization.
HOLD_LIFETIME_MS = 7 * 24 * 3600 * 1000

Clock = Callable[[], int]
"""Returns the current time in Unix milliseconds."""


def new_hold_id() -> str:
    """A fresh authorization hold id (what ``Ledger.authorize`` makes when given none);
    time-ordered, so the holds' indexes grow at one end (``identifiers``)."""
    return new_ordered_id("hold")


def wall_clock_ms() -> int:
    """The system clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class LedgerConfig:
    """Ledger policy (defaults as the module constants say)."""

    hold_lifetime_ms: int = HOLD_LIFETIME_MS

    def __post_init__(self) -> None:
        """Refuse a hold lifetime that would expire holds at once."""
        if self.hold_lifetime_ms <= 0:
            raise ValueError("hold_lifetime_ms must be positive")


# What the ledger hands its store is always a ``partial`` of a module-level function of
# ``gateway.ledger``, never a lambda: a store may be another process (``service``), and
# such a partial travels there by value (``wire``). These compose the rules for it.


def _given(tx: Transaction, *, outcome: Outcome) -> Outcome:
    return outcome


def _answers(tx: Transaction) -> Row | None:
    return tx.one("SELECT 1 AS ok")


class Ledger:
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

    def close(self) -> None:
        """Close the store (queued work is committed first)."""
        self._store.close()

    # Card and merchant accounts.

    def open_card_account(
        self, pan: str, expiry: str, credit_limit: int, currency: int
    ) -> CardAccount:
        """Open an active card account; raise AccountExists if the PAN has one."""
        validate_pan(pan)
        accounts.validate_expiry(expiry)
        check_amount("credit_limit", credit_limit, allow_zero=True)
        check_currency(currency)
        account_id = new_id("card")
        index = pan_index(self._keys, pan)
        sealed = seal_pan(self._keys, account_id, pan)
        masked = mask_pan(pan)
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
            )
        )

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
        now = self._clock()
        return self._store.read(partial(accounts.card_by_id, account_id=account_id, now_ms=now))

    def find_card_account(self, pan: str) -> CardAccount:
        """A card account by PAN; raise UnknownAccount."""
        validate_pan(pan)
        index = pan_index(self._keys, pan)
        now = self._clock()
        return self._store.read(partial(accounts.card_by_index, pan_index=index, now_ms=now))

    def reveal_pan(self, account_id: str) -> str:
        """Decrypt a card account's PAN (issuer use only; raise PanUnreadable if tampered)."""
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
        return self._store.read(partial(accounts.merchant_by_id, merchant_id=merchant_id))

    # Money operations, idempotent on the RRPID.

    def _once(
        self,
        *,
        rrpid: bytes,
        request_digest: bytes,
        now_ms: int,
        decide: Callable[[Transaction], Outcome],
        respond: Responder,
    ) -> bytes:
        check_bytes("rrpid", rrpid)
        check_bytes("request_digest", request_digest)
        return self._store.execute(
            partial(
                idempotency.run_once,
                rrpid=rrpid,
                request_digest=request_digest,
                now_ms=now_ms,
                decide=decide,
                respond=respond,
            )
        )

    def authorize(
        self,
        *,
        pan: str,
        pan_expiry: str,
        amount: int,
        currency: int,
        merchant_id: str,
        xid: bytes,
        pi_digest: bytes,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        capture_now: bool = False,
        hold_expires_at_ms: int | None = None,
        hold_id: str | None = None,
    ) -> bytes:
        """Decide an authorization (Authorized or Declined); raise PiPreviouslyUsed on replay.

        ``pan_expiry`` is the expiry in the cardholder's PAN data (YYYYMM); it must equal
        the one on file. ``capture_now`` captures the whole amount at once (a sale).
        """
        validate_pan(pan)
        accounts.validate_expiry(pan_expiry)
        check_amount("amount", amount)
        check_currency(currency)
        check_text("merchant_id", merchant_id)
        check_bytes("xid", xid)
        check_bytes("pi_digest", pi_digest)
        now = self._clock()
        expires = now + self._config.hold_lifetime_ms
        if hold_expires_at_ms is not None:
            if hold_expires_at_ms <= now:
                raise InvalidRequest("a hold must expire in the future")
            expires = hold_expires_at_ms
        index = pan_index(self._keys, pan)
        # The caller may choose the hold id (from ``new_hold_id``) so it can build the
        # approval's response before the transaction, off the single writer thread.
        hold_id = hold_id or new_hold_id()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            decide=partial(
                authorization.authorize,
                pan_index=index,
                pan_expiry=pan_expiry,
                amount=amount,
                currency=currency,
                merchant_id=merchant_id,
                xid=xid,
                pi_digest=pi_digest,
                rrpid=rrpid,
                hold_id=hold_id,
                expires_at_ms=expires,
                capture_now=capture_now,
                now_ms=now,
            ),
        )

    def decline(
        self, reason: Decline, *, rrpid: bytes, request_digest: bytes, respond: Responder
    ) -> bytes:
        """Answer a request with a decline the gateway decided (AMOUNT_MISMATCH), idempotently.

        The Declined outcome's response is stored under the RRPID like any other, so a
        retry gets the same bytes and the RRPID cannot be reused for another request.
        Nothing else changes: no hold, and the payment instruction is not used up (the
        issuer never decided on it).
        """
        if reason not in GATEWAY_DECLINES:
            raise InvalidRequest(f"the gateway does not decide {reason.value}: the issuer does")
        outcome = Declined(reason)
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=self._clock(),
            respond=respond,
            decide=partial(_given, outcome=outcome),
        )

    def reverse_authorization(
        self,
        *,
        merchant_id: str,
        hold_id: str,
        new_amount: int,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
    ) -> bytes:
        """Lower an authorization to ``new_amount`` (0 reverses it in full)."""
        check_text("merchant_id", merchant_id)
        check_text("hold_id", hold_id)
        check_amount("new_amount", new_amount, allow_zero=True)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            decide=partial(
                authorization.reverse_authorization,
                merchant_id=merchant_id,
                hold_id=hold_id,
                new_amount=new_amount,
                now_ms=now,
            ),
        )

    def _post_items(
        self,
        rule: Callable[..., Outcome],
        merchant_id: str,
        items: Sequence[CaptureItem] | Sequence[CreditItem] | Sequence[ReversalItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
    ) -> bytes:
        """Run one of the settlement rules over ``items`` once per RRPID."""
        check_text("merchant_id", merchant_id)
        check_items(items)
        now = self._clock()
        frozen = tuple(items)
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            decide=partial(rule, merchant_id=merchant_id, items=frozen, rrpid=rrpid, now_ms=now),
        )

    def capture(
        self,
        *,
        merchant_id: str,
        items: Sequence[CaptureItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
    ) -> bytes:
        """Capture each item of its hold (PostingOutcome)."""
        return self._post_items(
            settlement.capture, merchant_id, items, rrpid, request_digest, respond
        )

    def reverse_capture(
        self,
        *,
        merchant_id: str,
        items: Sequence[ReversalItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
    ) -> bytes:
        """Undo each named capture in full (PostingOutcome)."""
        return self._post_items(
            settlement.reverse_capture, merchant_id, items, rrpid, request_digest, respond
        )

    def credit(
        self,
        *,
        merchant_id: str,
        items: Sequence[CreditItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
    ) -> bytes:
        """Refund each item to the card of its hold (PostingOutcome)."""
        return self._post_items(
            settlement.credit, merchant_id, items, rrpid, request_digest, respond
        )

    def reverse_credit(
        self,
        *,
        merchant_id: str,
        items: Sequence[ReversalItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
    ) -> bytes:
        """Undo each named credit in full (PostingOutcome)."""
        return self._post_items(
            settlement.reverse_credit, merchant_id, items, rrpid, request_digest, respond
        )

    # Settlement batches.

    def open_batch(
        self, merchant_id: str, *, rrpid: bytes, request_digest: bytes, respond: Responder
    ) -> bytes:
        """Open a batch for the merchant (BatchOutcome, or Declined BATCH_ALREADY_OPEN)."""
        check_text("merchant_id", merchant_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            decide=partial(batches.open_for_merchant, merchant_id=merchant_id, now_ms=now),
        )

    def close_batch(
        self,
        merchant_id: str,
        batch_id: str | None = None,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
    ) -> bytes:
        """Close the named batch, or the open one (BatchOutcome or Declined)."""
        check_text("merchant_id", merchant_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            decide=partial(
                batches.close_for_merchant, merchant_id=merchant_id, batch_id=batch_id, now_ms=now
            ),
        )

    def purge_batch(
        self,
        merchant_id: str,
        batch_id: str,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
    ) -> bytes:
        """Retire a closed batch's detail (BatchOutcome or Declined)."""
        check_text("merchant_id", merchant_id)
        check_text("batch_id", batch_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            decide=partial(batches.purge_for_merchant, merchant_id=merchant_id, batch_id=batch_id),
        )

    def batch_summary(self, merchant_id: str, batch_id: str | None = None) -> BatchSummary:
        """A batch's totals per kind (the open batch by default); raise UnknownBatch."""
        return self._store.read(
            partial(batches.summary_for_merchant, merchant_id=merchant_id, batch_id=batch_id)
        )

    def batch_details(
        self, merchant_id: str, batch_id: str, *, starting_point: int = 0, max_items: int = 100
    ) -> BatchPage:
        """One page of a batch's transactions after ``starting_point`` (0: from the start)."""
        check_page(starting_point, max_items)
        return self._store.read(
            partial(
                batches.details_for_merchant,
                merchant_id=merchant_id,
                batch_id=batch_id,
                starting_point=starting_point,
                max_items=max_items,
            )
        )

    # Holds and the books.

    def hold(self, hold_id: str) -> Hold:
        """A hold and what happened against it; raise UnknownHold."""
        now = self._clock()
        return self._store.read(partial(holds.hold_by_id, hold_id=hold_id, now_ms=now))

    def expire_holds(self, limit: int = EXPIRE_BATCH) -> int:
        """Post the release of up to ``limit`` expired holds; return how many (call often)."""
        check_expire_limit(limit)
        now = self._clock()
        return self._store.execute(partial(authorization.expire_holds, now_ms=now, limit=limit))

    def totals(self) -> tuple[CurrencyTotals, ...]:
        """The four balance sums per currency."""
        return self._store.read(books.totals)

    def check_balanced(self) -> None:
        """Raise LedgerImbalance unless the books, balances and holds all agree."""
        self._store.read(books.check_balanced)

    def check_health(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial read."""
        self._store.read(_answers)

    def stored_response(self, rrpid: bytes, request_digest: bytes) -> bytes | None:
        """The answer stored for exactly this request, if it was decided before.

        Lets the gateway answer a retry whose checks no longer pass (its date has aged
        out of the freshness window) with the bytes it gave the first time. Raises
        RrpidReused when the RRPID was used for other bytes.
        """
        check_bytes("rrpid", rrpid)
        check_bytes("request_digest", request_digest)
        return self._store.read(
            partial(idempotency.stored_response, rrpid=rrpid, request_digest=request_digest)
        )
