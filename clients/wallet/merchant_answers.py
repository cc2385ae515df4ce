"""What the merchant's verified answers and signed Errors say of a purchase.

A verified PRes or InqRes replaces what the wallet recorded of the purchase
(``outcome_fields``); a signed Error naming the PReq is a refusal, recorded as such, but
for those that do not say the merchant did nothing (``undecided``), which leave the
outcome unknown. Of two answers about one purchase, the one further along was given
after the other (``given_after``): a PRes that arrives after an inquiry another command
ran while the merchant waited on the gateway replaces that inquiry's ORDER_RECEIVED.

A merchant of a later release may answer with codes this wallet does not know
(``setcore.enum_names``). A CompletionCode it does not know could say the order went
through as well as that it did not, and so could an AuthCode it does not know (a later
gateway's approval variant, say a partial approval with a hold placed, relayed as it
came): told neither "paid" nor "declined" (which would have the cardholder buy again
while the hold stands), the cardholder hears that the outcome is unknown, naming the
code (``AuthCode 42``), and the record stays as it was (``SENT`` after a PReq; an
earlier answer's state after an InqRes), for an inquiry to settle once the answer
carries codes the wallet reads (or the wallet is upgraded). So does a signed Error whose
code it does not know: the wallet cannot tell whether that one says the merchant did
nothing. Every AuthCode this build defines but APPROVED is a decline, recorded as the
merchant's answer.

A merchant that sheds the PReq unread (too busy) says so with a gRPC status, not signed:
never its word. The purchase is recorded ``SHED`` (it may have been read all the same),
and only the merchant's signed answer to an inquiry settles it: an InqRes, whose state
the record takes, or a signed UNKNOWN_XID, recorded ``NOT_BOUGHT`` (``unheld``). That is
the merchant's statement, under its signature, that it holds no such purchase, not proof
that the card was not charged: the signed Error is kept with the record, as it came, for
the cardholder to hold against a card statement that says otherwise.
"""

from __future__ import annotations

import base64

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from setcore.enum_names import code_name, is_known
from setcore.errors import ErrorCode, PeerError
from setpay.v1 import authorization_pb2, purchase_pb2

# The merchant's signed Errors on a PReq that do not say it did nothing with it: the
# catch-all for a failure of its own (a merchant turns any unexpected exception into
# UNSPECIFIED_FAILURE, even once it has recorded the purchase and authorized the card),
# the code of no meaning (0), and PI_PREVIOUSLY_USED, which says the merchant holds a PI
# for our fresh XID: a copy of this PReq gRPC resent, the first perhaps authorizing now.
# Every other code names a check of the PReq as received, made before the merchant acts;
# a code of a later release this wallet does not define is undecided too (``undecided``).
UNDECIDED_REFUSALS = frozenset(
    {
        ErrorCode.ERROR_CODE_UNSPECIFIED,
        ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE,
        ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED,
    }
)


def undecided(refusal: PeerError) -> str | None:
    """Why the merchant's signed Error leaves the purchase's outcome unknown; None when it
    is a refusal (the merchant did nothing with the PReq)."""
    if refusal.code == ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED:
        # Our XID is fresh to this wallet (``PurchaseBook.add`` refuses one it holds), so
        # the PI "already used" is taken as our own: a copy of this PReq that gRPC resent
        # while the first was being decided, which may be authorizing now.
        return "the merchant already holds this purchase (a resent copy)"
    if not is_known(ErrorCode, refusal.code):
        return (
            f"the merchant refused with {refusal.code_name}, a code of a later release this "
            "wallet cannot read, which may not say it did nothing"
        )
    if refusal.code in UNDECIDED_REFUSALS:
        return f"the merchant failed, maybe after taking the order: {refusal.code_name}"
    return None


# The state of a purchase whose PReq the merchant answered, unsigned, it shed unread at
# every attempt: the wallet's own word, as SENT is, for a purchase the merchant may hold.
SHED = "SHED"
# The state of a purchase the merchant said, signed, it holds nothing of (its UNKNOWN_XID
# answering an inquiry: the code kept in ``refusal``, the signed Error in ``signed_error``).
# The merchant's word, on which the card statement has the last one.
NOT_BOUGHT = "NOT_BOUGHT"
# The states a signed UNKNOWN_XID to an inquiry settles as NOT_BOUGHT. Not SENT: a PReq
# that left unanswered may be read yet (a merchant answers UNKNOWN_XID until it has
# recorded the purchase), where a SHED one was refused at every attempt, and one that
# was read all the same is a purchase the merchant has now denied under its signature.
SETTLED_BY_UNKNOWN_XID = frozenset({SHED, NOT_BOUGHT})

# How far along a merchant's answer says the purchase was: it holds no PReq yet, it holds
# one and has not decided it (waiting on the gateway), or it decided it. A merchant's
# order only moves on from each (SET-PROTOCOL.md 5.6: "orderReceived", the final state
# learnt later), so of two verified answers about one purchase, the one further along
# was given after the other, whichever the wallet received first. MEANINGLESS_RATIO says
# nothing of the order's progress: never taken as further along, nor as behind.
_PROGRESS = {
    "COMPLETION_CODE_ORDER_NOT_RECEIVED": 0,
    "COMPLETION_CODE_ORDER_RECEIVED": 1,
    "COMPLETION_CODE_ORDER_REJECTED": 2,
    "COMPLETION_CODE_AUTHORIZATION_PERFORMED": 2,
    "COMPLETION_CODE_CAPTURE_PERFORMED": 2,
    "COMPLETION_CODE_CREDIT_PERFORMED": 2,
}


def given_after(answer: str, recorded: str) -> bool:
    """Whether a verified answer of completion ``answer`` was given after the one a record
    of completion ``recorded`` holds: the merchant had not decided the purchase when it
    gave that one (ORDER_RECEIVED, ORDER_NOT_RECEIVED), and it is further along in this.
    False for a record of the wallet's own word (SENT, SHED, REFUSED, NOT_BOUGHT) or of a
    decision: a PRes never replaces those once another command recorded them."""
    if recorded not in _PROGRESS or answer not in _PROGRESS:
        return False
    return _PROGRESS[answer] > _PROGRESS[recorded]


def unheld(completion: str, refusal: PeerError, signed: bytes) -> dict[str, object] | None:
    """The record fields the merchant's signed Error answering an inquiry says of a
    purchase in state ``completion``: ``NOT_BOUGHT`` for an UNKNOWN_XID about a SHED (or
    NOT_BOUGHT) purchase, with ``signed``, that Error's signed bytes as they came; None
    for any other, or without those bytes (raised as it is, the record left as it was)."""
    if (
        completion in SETTLED_BY_UNKNOWN_XID
        and refusal.code == ErrorCode.ERROR_CODE_UNKNOWN_XID
        and signed
    ):
        return {
            "completion": NOT_BOUGHT,
            "refusal": refusal.code_name,
            "signed_error": base64.b64encode(signed).decode(),
        }
    return None


# What the wallet calls each code of a PRes or InqRes it must read before recording one.
_READ_CODES: dict[str, tuple[EnumTypeWrapper, str]] = {
    "completion_code": (purchase_pb2.CompletionCode, "a completion code"),
    "auth_code": (authorization_pb2.AuthCode, "an authorization code"),
}


class UnreadablePurchaseAnswer(Exception):
    """A verified PRes or InqRes reports a CompletionCode or AuthCode this wallet does not
    define: its outcome is unknown to this wallet, and nothing of it is recorded."""

    def __init__(self, enum: EnumTypeWrapper, value: int, kind: str) -> None:
        super().__init__(
            f"the merchant reports {code_name(enum, value)}, {kind} of a later release this "
            "wallet cannot read; the purchase's record is left as it was"
        )


def outcome_fields(data: purchase_pb2.PResData) -> dict[str, object]:
    """The record fields a verified PRes or InqRes reports (its one payload, setcore's
    ``check_answer``); they replace any earlier state, a refusal's (and the signed Error
    a ``NOT_BOUGHT`` kept) too.
    ``UnreadablePurchaseAnswer`` for a completion code or AuthCode this wallet does not define
    (the completion code named first when both are)."""
    payload = data.payloads[0]
    for field, (enum, kind) in _READ_CODES.items():
        value = getattr(payload, field)
        if not is_known(enum, value):
            raise UnreadablePurchaseAnswer(enum, value, kind)
    return {
        "refusal": "",
        "signed_error": "",
        "completion": code_name(purchase_pb2.CompletionCode, payload.completion_code),
        # Known (checked above): any but AUTH_CODE_APPROVED is a decline.
        "auth_code": code_name(authorization_pb2.AuthCode, payload.auth_code),
        "auth_amount": payload.auth_amt.amount,
        "captured": payload.captured_amt.amount,
        "credited": payload.credited_amt.amount,
    }
