"""What the merchant keeps: offers, orders and settlement operations, as plain values.

An order's life::

    offer (SET Initiation: LID-M, description, amount; agreed out of band)
      -> initiated   PInit answered: XID, TransIDs and Chall-M fixed
      -> purchased   PReq verified; the PI is held, sealed, byte for byte
      -> authorizing AuthReq built and stored; outcome unknown until the gateway's answer
                     verifies and carries an AuthCode this release reads, re-sent byte
                     for byte until then
      -> authorized | declined | failed (the gateway answered with a verified SET Error)
      -> reversed    the whole authorization was given back

Captures, refunds and reversals are ``Operation`` rows beside the order: sent (outcome
unknown, re-sent byte for byte until the gateway's answer verifies and carries a result
code this release reads), then succeeded,
refused (the gateway's answer says no) or failed (the gateway refused the request with a
verified SET Error); what was captured and credited is summed from the successful ones.
A batch opened, closed or purged is a ``BatchRequest`` that goes through the same states.
Nothing here is or holds a PAN: the merchant never sees one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from setpay.v1 import common_pb2


class OrderState(enum.StrEnum):
    """Where an order is in its life."""

    INITIATED = "initiated"
    PURCHASED = "purchased"
    AUTHORIZING = "authorizing"
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    FAILED = "failed"
    REVERSED = "reversed"


class OperationKind(enum.StrEnum):
    """A settlement operation on an authorized order."""

    CAPTURE = "capture"
    CAPTURE_REVERSAL = "capture-reversal"
    CREDIT = "credit"
    CREDIT_REVERSAL = "credit-reversal"
    AUTH_REVERSAL = "auth-reversal"


class OperationState(enum.StrEnum):
    """Whether the gateway has answered an operation, and how."""

    #: Stored and sent, no verified answer yet (or one of a result code this release
    #: cannot read): outcome unknown, ``resume`` sends it again.
    SENT = "sent"
    SUCCEEDED = "succeeded"
    #: The gateway answered, and its answer's code says no.
    REFUSED = "refused"
    #: The gateway refused the request itself with a verified SET Error (``error_code``):
    #: it did nothing with it.
    FAILED = "failed"


@dataclass(frozen=True)
class Money:
    """An amount in integer minor units of an ISO 4217 currency."""

    currency: int
    minor: int
    exp10: int = 2

    def to_proto(self) -> common_pb2.CurrencyAmount:
        """The wire form."""
        return common_pb2.CurrencyAmount(
            currency=self.currency, amount=self.minor, exp10=self.exp10
        )

    @classmethod
    def from_proto(cls, amount: common_pb2.CurrencyAmount) -> Money:
        """From the wire form."""
        return cls(amount.currency, amount.amount, amount.exp10)

    def with_minor(self, minor: int) -> Money:
        """The same currency, another amount."""
        return Money(self.currency, minor, self.exp10)

    def __str__(self) -> str:
        return f"{self.minor} ({self.currency})"


@dataclass(frozen=True)
class Offer:
    """An order agreed out of band (SET Initiation), waiting for the wallet's PInit."""

    lid_m: bytes
    description: bytes
    amount: Money
    brand_id: str
    created_ms: int
    #: Its current order, the one its last PInit opened (None before any): orders that
    #: ended declined or failed before it keep their own XIDs.
    xid: bytes | None


@dataclass(frozen=True)
class Authorization:
    """The gateway's verified answer to an AuthReq."""

    auth_code: int
    amount: Money
    approval_code: str
    #: The AuthResData bytes the gateway signed (kept as evidence).
    auth_res: bytes
    #: The capture token, sealed by the gateway to itself: opaque, returned byte for byte.
    cap_token: bytes
    #: The acquirer's message to the cardholder: unreadable here, copied into PRes verbatim.
    acq_card_msg: bytes = b""


@dataclass(frozen=True)
class Order:
    """One transaction, keyed by its XID."""

    xid: bytes
    lid_m: bytes
    trans_ids: bytes
    chall_m: bytes
    description: bytes
    amount: Money
    brand_id: str
    state: OrderState
    created_ms: int
    updated_ms: int
    cardholder_thumb: bytes | None = None
    oi_data: bytes | None = None
    pi: bytes | None = None
    auth_rrpid: bytes | None = None
    auth_request: bytes | None = None
    auth_request_digest: bytes | None = None
    authorization: Authorization | None = None
    error_code: int = 0
    #: While authorizing: answers in a row that did not verify (a verified one ends the
    #: run), and the time before which the worker does not send the AuthReq again
    #: (``outcome.next_try``); 0 and 0 otherwise.
    unverified: int = 0
    retry_after_ms: int = 0
    #: The thumbprint of the signature certificate that signed the order's PInitRes: the
    #: one the cardholder's PI names, under which every AuthReq for it is signed. None
    #: for an order opened before setpay kept it (signed then with the current one).
    signer_thumb: bytes | None = None
    #: Verified answers to its AuthReq whose AuthCode this release cannot read
    #: (``outcome.require_known``): the gateway decided these bytes, so they are never
    #: built afresh (``stored_requests``). Never reset while the AuthReq waits.
    unreadable: int = 0

    def trans_ids_proto(self) -> common_pb2.TransIDs:
        """The TransIDs as the wire message."""
        return common_pb2.TransIDs.FromString(self.trans_ids)

    @property
    def short_id(self) -> str:
        """A short form of the XID for logs and listings."""
        return short(self.xid)


@dataclass(frozen=True)
class Operation:
    """A capture, refund or reversal sent to the gateway, with its answer once known."""

    rrpid: bytes
    xid: bytes
    kind: OperationKind
    amount: Money
    state: OperationState
    request: bytes
    request_digest: bytes
    original_rrpid: bytes | None
    result_code: int
    result_amount: int
    batch_id: str
    created_ms: int
    #: The SET Error code when ``state`` is FAILED, else 0.
    error_code: int = 0
    #: While sent: as ``Order.unverified``, ``Order.retry_after_ms`` and
    #: ``Order.unreadable`` (of its result code).
    unverified: int = 0
    retry_after_ms: int = 0
    unreadable: int = 0


def short(identifier: bytes) -> str:
    """The first 8 hex digits of an id: enough to follow a story in a log, never a PAN-like run."""
    return identifier.hex()[:8]


@dataclass(frozen=True)
class BatchRequest:
    """A BatchAdminReq that changes a batch (open, close, purge), with its answer once known."""

    rrpid: bytes
    #: Its BatchOperation.
    operation: int
    #: The batch it names; none for an open (the gateway names the batch it opens).
    batch_id: str
    #: What the request asks back, kept to build it afresh (``renewal``).
    return_summary: bool
    starting_point: int
    maximum_items: int
    state: OperationState
    request: bytes
    request_digest: bytes
    #: The answer's BatchAdminStatus and its BatchAdminResData bytes, once answered.
    status: int
    answer: bytes
    created_ms: int
    #: The SET Error code when ``state`` is FAILED, else 0.
    error_code: int = 0
    #: While sent: as ``Order.unverified``, ``Order.retry_after_ms`` and
    #: ``Order.unreadable`` (of its result code).
    unverified: int = 0
    retry_after_ms: int = 0
    unreadable: int = 0
