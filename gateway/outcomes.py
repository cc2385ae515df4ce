"""How the issuer ledger's business outcomes read on the wire: the one mapping table.

Declines are normal signed responses with a code and a reason (DESIGN.md 5.2); this
module is the only place that knows which SET code stands for which ledger decline.
"""

from __future__ import annotations

from gateway.ledger import Decline
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c
from setpay.v1 import gateway_admin_pb2 as g

# Decline -> (AuthCode, RespReason) for AuthRes.
_AUTH: dict[Decline, tuple[int, int]] = {
    Decline.INSUFFICIENT_FUNDS: (a.AUTH_CODE_DECLINED, a.RESP_REASON_INSUFFICIENT_FUNDS),
    Decline.EXPIRED_CARD: (a.AUTH_CODE_EXPIRED_CARD, a.RESP_REASON_EXPIRED_CARD),
    Decline.BLOCKED_ACCOUNT: (a.AUTH_CODE_DECLINED, a.RESP_REASON_BLOCKED_ACCOUNT),
    Decline.CLOSED_ACCOUNT: (a.AUTH_CODE_DECLINED, a.RESP_REASON_CLOSED_ACCOUNT),
    Decline.UNKNOWN_ACCOUNT: (a.AUTH_CODE_DECLINED, a.RESP_REASON_UNKNOWN_ACCOUNT),
    Decline.CURRENCY_MISMATCH: (a.AUTH_CODE_AMOUNT_ERROR, a.RESP_REASON_CURRENCY_MISMATCH),
    Decline.AMOUNT_MISMATCH: (a.AUTH_CODE_AMOUNT_ERROR, a.RESP_REASON_AMOUNT_MISMATCH),
}

# Decline -> AuthRevCode for AuthRevRes.
_AUTH_REV: dict[Decline, int] = {
    Decline.UNKNOWN_HOLD: a.AUTH_REV_CODE_INVALID_TRANSACTION,
    Decline.HOLD_EXPIRED: a.AUTH_REV_CODE_INVALID_TRANSACTION,
    Decline.AMOUNT_EXCEEDS_AUTHORIZATION: a.AUTH_REV_CODE_INVALID_AMOUNT,
    Decline.INVALID_AMOUNT: a.AUTH_REV_CODE_INVALID_AMOUNT,
}

# Decline -> CapCode for CapRes items. CURRENCY_MISMATCH does not reach it from the
# gateway: setcore refuses an item whose currency is not its capture token's, which is the
# hold's (``setcore.capture.check_item_amount``), before the ledger sees it. Mapped all the
# same, as the item's data disagreeing with the authorization's, should that check move.
_CAP: dict[Decline, a.CapCode] = {
    Decline.UNKNOWN_HOLD: a.CAP_CODE_UNKNOWN_XID,
    Decline.HOLD_EXPIRED: a.CAP_CODE_AUTH_EXPIRED,
    Decline.AMOUNT_EXCEEDS_AUTHORIZATION: a.CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION,
    Decline.INVALID_AMOUNT: a.CAP_CODE_INVALID_AUTH_DATA,
    Decline.CURRENCY_MISMATCH: a.CAP_CODE_INVALID_AUTH_DATA,
    Decline.BATCH_CLOSED: a.CAP_CODE_BATCH_CLOSED,
    Decline.BATCH_UNKNOWN: a.CAP_CODE_BATCH_UNKNOWN,
}

# Decline -> CapRevOrCredCode for capture reversal, credit and credit reversal items.
# CURRENCY_MISMATCH (a credit's) is refused by setcore first, as for a capture above.
# INSUFFICIENT_FUNDS comes only from a credit reversal: taking a refund back from the card
# would take it over its limit.
_CAP_REV_OR_CRED: dict[Decline, int] = {
    Decline.UNKNOWN_HOLD: c.CAP_REV_OR_CRED_CODE_ORIGINAL_NOT_FOUND,
    Decline.UNKNOWN_ORIGINAL: c.CAP_REV_OR_CRED_CODE_ORIGINAL_NOT_FOUND,
    Decline.ORIGINAL_REVERSED: c.CAP_REV_OR_CRED_CODE_ORIGINAL_PROCESSED,
    Decline.ORIGINAL_REFUNDED: c.CAP_REV_OR_CRED_CODE_ORIGINAL_PROCESSED,
    Decline.ORIGINAL_PURGED: c.CAP_REV_OR_CRED_CODE_CAP_PURGED,
    Decline.AMOUNT_EXCEEDS_CAPTURED: c.CAP_REV_OR_CRED_CODE_AMOUNT_EXCEEDS_ORIGINAL,
    Decline.AMOUNT_EXCEEDS_AUTHORIZATION: c.CAP_REV_OR_CRED_CODE_AMOUNT_EXCEEDS_ORIGINAL,
    Decline.INVALID_AMOUNT: c.CAP_REV_OR_CRED_CODE_CAP_DATA_MISMATCH,
    Decline.CURRENCY_MISMATCH: c.CAP_REV_OR_CRED_CODE_CAP_DATA_MISMATCH,
    Decline.INSUFFICIENT_FUNDS: c.CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS,
    Decline.BATCH_CLOSED: c.CAP_REV_OR_CRED_CODE_BATCH_CLOSED,
    Decline.BATCH_UNKNOWN: c.CAP_REV_OR_CRED_CODE_BATCH_UNKNOWN,
}

# Decline -> BatchAdminStatus.
_BATCH: dict[Decline, int] = {
    Decline.BATCH_UNKNOWN: g.BATCH_ADMIN_STATUS_BATCH_UNKNOWN,
    Decline.BATCH_CLOSED: g.BATCH_ADMIN_STATUS_BATCH_CLOSED,
    Decline.BATCH_ALREADY_OPEN: g.BATCH_ADMIN_STATUS_BATCH_ALREADY_OPEN,
    Decline.BATCH_NOT_CLOSED: g.BATCH_ADMIN_STATUS_BATCH_NOT_CLOSED,
}


def auth_code_for(decline: Decline) -> int:
    """The AuthCode of a declined authorization."""
    return _AUTH.get(decline, (a.AUTH_CODE_DECLINED, 0))[0]


def resp_reason_for(decline: Decline) -> int:
    """The RespReason of a declined authorization."""
    return _AUTH.get(decline, (0, a.RESP_REASON_UNSPECIFIED))[1]


def auth_rev_code_for(decline: Decline) -> int:
    """The AuthRevCode of a refused authorization reversal."""
    return _AUTH_REV.get(decline, a.AUTH_REV_CODE_UNSPECIFIED_FAILURE)


def cap_code_for(decline: Decline) -> a.CapCode:
    """The CapCode of a refused capture item."""
    return _CAP.get(decline, a.CAP_CODE_UNSPECIFIED_FAILURE)


def cap_rev_or_cred_code_for(decline: Decline) -> int:
    """The CapRevOrCredCode of a refused item."""
    return _CAP_REV_OR_CRED.get(decline, c.CAP_REV_OR_CRED_CODE_UNSPECIFIED_FAILURE)


def batch_status_for(decline: Decline) -> int:
    """The BatchAdminStatus of a refused batch operation."""
    return _BATCH.get(decline, g.BATCH_ADMIN_STATUS_UNSPECIFIED_FAILURE)
