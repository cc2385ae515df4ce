"""What a money operation decided: the values handed to the caller's ``respond``.

Every money operation ends in exactly one ``Outcome``; the caller turns it into signed
response bytes, which the ledger stores under the RRPID (``idempotency``). A
``Declined`` outcome changes no balance but is stored all the same, so a retried declined
request gets the same bytes back.

Which operation yields which outcome:

    authorize               Authorized | Declined
    reverse_authorization   AuthorizationReversed | ReversalDeclined
    capture, credit,
    reverse_capture,
    reverse_credit          PostingOutcome (one Posted | Declined per item, in order)
    open/close/purge_batch  BatchOutcome | Declined
    decline                 Declined (a reason the gateway decided: GATEWAY_DECLINES)

Suggested SET codes for each decline reason (the gateway owns the mapping):

    INSUFFICIENT_FUNDS ... CURRENCY_MISMATCH   AuthCode DECLINED (EXPIRED_CARD: EXPIRED_CARD)
                                               with the RespReason of the same name;
                                               INSUFFICIENT_FUNDS of a credit reversal:
                                               CapRevOrCredCode INSUFFICIENT_FUNDS
    UNKNOWN_HOLD                 CapCode UNKNOWN_XID, AuthRevCode INVALID_TRANSACTION,
                                 CapRevOrCredCode ORIGINAL_NOT_FOUND
    HOLD_EXPIRED                 CapCode AUTH_EXPIRED
    AMOUNT_EXCEEDS_AUTHORIZATION CapCode AMOUNT_EXCEEDS_AUTHORIZATION
    INVALID_AMOUNT               AuthRevCode INVALID_AMOUNT
    AMOUNT_EXCEEDS_CAPTURED      CapRevOrCredCode AMOUNT_EXCEEDS_ORIGINAL
    UNKNOWN_ORIGINAL             CapRevOrCredCode ORIGINAL_NOT_FOUND
    ORIGINAL_REVERSED/REFUNDED   CapRevOrCredCode ORIGINAL_PROCESSED
    ORIGINAL_PURGED              CapRevOrCredCode CAP_PURGED
    BATCH_UNKNOWN / BATCH_CLOSED CapCode / CapRevOrCredCode / BatchAdminStatus of that name
    BATCH_ALREADY_OPEN           BatchAdminStatus BATCH_ALREADY_OPEN
    BATCH_NOT_CLOSED             BatchAdminStatus BATCH_NOT_CLOSED
    AMOUNT_MISMATCH              AuthCode AMOUNT_ERROR, RespReason AMOUNT_MISMATCH
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class Decline(enum.StrEnum):
    """Why the ledger said no; a business outcome, answered with a normal response."""

    # An authorization.
    INSUFFICIENT_FUNDS = "insufficient-funds"
    EXPIRED_CARD = "expired-card"
    BLOCKED_ACCOUNT = "blocked-account"
    CLOSED_ACCOUNT = "closed-account"
    UNKNOWN_ACCOUNT = "unknown-account"
    CURRENCY_MISMATCH = "currency-mismatch"
    # An operation on an existing authorization hold.
    UNKNOWN_HOLD = "unknown-hold"
    HOLD_EXPIRED = "hold-expired"
    AMOUNT_EXCEEDS_AUTHORIZATION = "amount-exceeds-authorization"
    INVALID_AMOUNT = "invalid-amount"
    AMOUNT_EXCEEDS_CAPTURED = "amount-exceeds-captured"
    # A reversal of an earlier capture or credit.
    UNKNOWN_ORIGINAL = "unknown-original"
    ORIGINAL_REVERSED = "original-reversed"
    ORIGINAL_REFUNDED = "original-refunded"
    ORIGINAL_PURGED = "original-purged"
    # Settlement batches.
    BATCH_UNKNOWN = "batch-unknown"
    BATCH_CLOSED = "batch-closed"
    BATCH_ALREADY_OPEN = "batch-already-open"
    BATCH_NOT_CLOSED = "batch-not-closed"
    # Decided by the gateway, never by the ledger's rules; stored with Ledger.decline.
    AMOUNT_MISMATCH = "amount-mismatch"


GATEWAY_DECLINES = frozenset({Decline.AMOUNT_MISMATCH})
"""The declines the gateway decides itself and may store with ``Ledger.decline``."""


class TransactionKind(enum.StrEnum):
    """The settlement transactions a batch carries (values as in TransactionDetail.kind)."""

    CAPTURE = "capture"
    CAPTURE_REVERSAL = "capture-reversal"
    CREDIT = "credit"
    CREDIT_REVERSAL = "credit-reversal"


@dataclass(frozen=True)
class Declined:
    """The request was refused for ``reason``; nothing changed but the release of holds
    the decision took as expired (``expiry``)."""

    reason: Decline


@dataclass(frozen=True)
class ReversalDeclined(Declined):
    """An authorization reversal refused for ``reason``; nothing changed, and the
    authorization stands at ``authorized``.

    The merchant is told what the authorization stands at, not what its (perhaps
    stale) capture token says: ``holds.still_authorized`` as the ledger read it when it
    decided, 0 for a hold it does not know for this merchant. That is what was captured,
    gross (a capture reversal does not give it back), which no reversal may go below,
    plus what is still held (nothing once expired), which alone may still be captured.
    """

    authorized: int


@dataclass(frozen=True)
class Posted:
    """One settlement transaction posted, and where it sits in the merchant's batch."""

    kind: TransactionKind
    hold_id: str
    amount: int
    currency: int
    batch_id: str
    batch_seq: int


@dataclass(frozen=True)
class Authorized:
    """Approved: ``amount`` is held on the card until captured, released or expired."""

    hold_id: str
    card_account_id: str
    amount: int
    currency: int
    expires_at_ms: int
    capture: Posted | None
    """The immediate capture of a sale (capture_now), else None."""


@dataclass(frozen=True)
class AuthorizationReversed:
    """The authorization now stands at ``amount``; ``released`` went back to the card."""

    hold_id: str
    amount: int
    released: int
    currency: int


@dataclass(frozen=True)
class PostingOutcome:
    """The result of each item of a capture, credit or reversal request, in order."""

    items: tuple[Posted | Declined, ...]


@dataclass(frozen=True)
class KindTotals:
    """How many transactions of one kind a batch holds, and their sum."""

    count: int
    amount: int


@dataclass(frozen=True)
class BatchSummary:
    """A settlement batch's state and totals per transaction kind."""

    batch_id: str
    merchant_id: str
    status: str
    """``open``, ``closed`` or ``purged``."""
    currency: int
    opened_at_ms: int
    closed_at_ms: int | None
    totals: dict[TransactionKind, KindTotals]
    """Every kind is present, with zeros when the batch has none."""

    # Net figures. A reversal is filed in the batch open when it is made, which need not
    # be its original's (SET's NewBatchID: the original's batch may be closed), so a
    # batch's net can be negative: it takes back from the merchant.

    @property
    def captured_net(self) -> int:
        """Captures less capture reversals in this batch."""
        return (
            self.totals[TransactionKind.CAPTURE].amount
            - self.totals[TransactionKind.CAPTURE_REVERSAL].amount
        )

    @property
    def credited_net(self) -> int:
        """Credits (refunds) less credit reversals in this batch."""
        return (
            self.totals[TransactionKind.CREDIT].amount
            - self.totals[TransactionKind.CREDIT_REVERSAL].amount
        )

    @property
    def net(self) -> int:
        """What this batch settles to the merchant: captured net less credited net."""
        return self.captured_net - self.credited_net


@dataclass(frozen=True)
class BatchOutcome:
    """A batch was opened, closed or purged; its summary after the change."""

    summary: BatchSummary


Outcome = (
    Authorized | AuthorizationReversed | PostingOutcome | BatchOutcome | ReversalDeclined | Declined
)
"""Everything a money operation can decide."""

Responder = Callable[[Outcome], bytes]
"""Builds the signed response bytes for an outcome. The caller's; ``Ledger`` calls it in
the caller's thread, outside any transaction, once the decision is committed."""


@dataclass(frozen=True)
class PrebuiltApproval:
    """The answer to the likely outcome, built before the request reached the ledger.

    The gateway signs the approval it expects in parallel with other requests, so the
    usual authorization costs one write transaction that only decides and stores. These
    bytes answer the outcome when it is exactly that approval (this hold id, amount and
    currency, no immediate capture); any other outcome is answered by ``respond`` after
    the decision is committed. Plain data, so it travels to a ledger service by value.
    """

    hold_id: str
    amount: int
    currency: int
    response: bytes

    def answers(self, outcome: Outcome) -> bool:
        """Whether ``response`` is the answer to ``outcome``."""
        return (
            isinstance(outcome, Authorized)
            and outcome.capture is None
            and (outcome.hold_id, outcome.amount, outcome.currency)
            == (self.hold_id, self.amount, self.currency)
        )


@dataclass(frozen=True)
class Unanswered:
    """A decision committed without its response; the caller builds and stores one
    (``idempotency.store_answer``). ``decided_at_ms`` is when the ledger decided;
    ``checked_at_ms`` when the caller checked the request (its date, its certificates),
    a few milliseconds before, or the decision's time where that was not recorded."""

    outcome: Outcome
    decided_at_ms: int
    checked_at_ms: int
