"""What the wallet keeps between PInitReq and PInitRes, and what it accepts of the
merchant's offer beyond its echoes and signature: the TransIDs fields the merchant chose.

SET-PROTOCOL.md 5.3: the merchant answers PInitReq with the TransIDs of the purchase, and
the wallet's PReq signs them twice (in OIData and in the sealed PIHead); every later
message of the purchase repeats them. The merchant picks the XID (checked as any id) and
the PReq date, and copies the language the wallet asked for. A field taken unchecked is
the merchant's to fill as it likes: a language of 300 KB makes a PReq that gRPC refuses
to send, after the wallet recorded it as sent. ``ProtocolError`` codes:
WRAPPER_MSG_MISMATCH for another language than the one asked for, DECODING_FAILURE for a
PaySysID (reserved, never written: common.proto), MESSAGE_TOO_OLD or MESSAGE_TOO_NEW for a
PReq date outside the freshness window of the wallet's clock (``check_date``): the
merchant dates the TransIDs when it answers, which is now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from setcore.errors import ErrorCode, fail
from setcore.freshness import check_date, now_ms
from setcore.pki.verified import VerifiedCertificate
from setpay.v1 import common_pb2


@dataclass(frozen=True)
class PInitState:
    """What the wallet remembers between PInitReq and PInitRes, the request's digest too,
    the language it asked for (which the merchant copies into the TransIDs) and the
    Thumbs it sent (which the merchant echoes)."""

    rrpid: bytes
    chall_c: bytes
    lid_c: bytes
    brand_id: str
    bin: str
    lid_m: bytes = b""
    request_digest: bytes = b""
    language: str = "en"
    thumbs: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class MerchantOffer:
    """What a verified PInitRes tells the wallet: the transaction and whom to trust."""

    trans_ids: common_pb2.TransIDs
    chall_m: bytes
    merchant: VerifiedCertificate
    gateway: VerifiedCertificate


def check_offered_ids(ids: common_pb2.TransIDs, state: PInitState, at: datetime | None) -> None:
    """Raise unless the language is the one asked for, no PaySysID is named and the PReq
    date is within the window of ``at`` (now when None)."""
    if ids.language != state.language:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "PInitRes names another language")
    if ids.pay_sys_id:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PInitRes names a PaySysID")
    check_date(ids.preq_date_unix_ms, now_ms() if at is None else int(at.timestamp() * 1000))
