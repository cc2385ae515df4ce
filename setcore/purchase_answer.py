"""What the wallet accepts in a merchant's PRes or InqRes beyond its echoes: the signature
of the merchant it bought from, the transaction it offered, one payload with a completion
code, and amounts within the one the cardholder agreed.

SET-PROTOCOL.md 5.6 and 5.7: PResData carries the TransIDs of the purchase and, per
payload, what became of it (authorized, captured, credited amounts). The merchant signs
these, but a signature only says who wrote them: a PRes naming another LID-C or LID-M
answers some other purchase, and an amount the cardholder never agreed to would be
recorded by the wallet as what the merchant took. ``ProtocolError`` codes: UNKNOWN_XID
and UNKNOWN_LID for another transaction's ids, WRAPPER_MSG_MISMATCH for TransIDs that
differ from the offer otherwise (as the merchant's own check of OIData says), and
DECODING_FAILURE for an amount in another currency or exponent, or above the agreed one
(as the merchant says of an AuthRes giving such an amount), and for an answer that does
not report one outcome (no payload, several, or no completion code).

The merchant is pinned by identity, as ``setcore.signers.gateway_signer`` pins a gateway:
its merchant ID in its brand (``MerchantIdentity``), not the certificate that signed the
PInitRes, so that a purchase made before ``setpay merchant renew`` can still be asked
about. An Error in place of the answer is held to the same merchant.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from hsm.base import PublicKey
from setcore.amount import same_unit
from setcore.error_message import open_error
from setcore.errors import ErrorCode, PeerError, ProtocolError, fail
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.signed import SignerResolver, parse_signed
from setcore.signers import signer
from setpay.v1 import common_pb2, crypto_pb2, error_pb2, purchase_pb2

# The amounts a PResPayload reports; each, when present, is in the purchase's unit.
_REPORTED = ("auth_amt", "captured_amt", "credited_amt")
# SET-PROTOCOL.md 5.6: one PResPayload per shipment or authorization. setpay authorizes a
# purchase once and ships no part of it apart, so an answer about it has exactly one; a
# wallet keeping only the first of several would record half of what it was told.
PAYLOADS_PER_ANSWER = 1


@dataclass(frozen=True)
class MerchantIdentity:
    """Who the merchant of a purchase is: its merchant ID (merchantData), in its brand.
    Not a certificate: it outlives ``setpay merchant renew``.

    The ID is a safe pin because the Merchant CA gives it to one holder only: an initial
    request naming an ID that holds a live certificate is refused, and so is one naming
    an ID the acquirer holds a settlement account for without that account's id
    (``gateway.ca.merchant``). Whoever signs with a certificate of this ID is the
    merchant the cardholder paid, or the one its money goes to.
    """

    brand_id: str
    merchant_id: str

    @classmethod
    def of(cls, certificate: VerifiedCertificate) -> MerchantIdentity:
        """The identity of a verified merchant certificate ("" for one without an ID)."""
        data = certificate.merchant_data
        return cls(certificate.brand_id, data.merchant_id if data is not None else "")

    def __str__(self) -> str:
        return f"{self.merchant_id!r} (brand {self.brand_id})"


@dataclass(frozen=True)
class PurchaseState:
    """What the wallet remembers between PReq and PRes (and for later inquiries).

    ``merchant_thumb``: the certificate that signed the PInitRes. ``purch_amt``: the
    amount the cardholder agreed, which no amount an answer reports may exceed or differ
    from in unit; None (a purchase recorded without it) checks none. ``request_digest``:
    of the PReq as sent, which a merchant's Error must name. ``merchant``: whose answers
    about the purchase are its word (``merchant_signer``).
    """

    rrpid: bytes
    chall_c: bytes
    trans_ids: common_pb2.TransIDs
    merchant_thumb: bytes
    purch_amt: common_pb2.CurrencyAmount | None = None
    request_digest: bytes = b""
    merchant: MerchantIdentity | None = None


def merchant_signer(
    trust: TrustStore, purchase: PurchaseState
) -> SignerResolver[VerifiedCertificate]:
    """A resolver for the answers about ``purchase``: a MERCHANT signature certificate
    whose chain ends at the trusted root, valid now and unrevoked (``TrustStore.resolve``),
    of the purchase's merchant's brand and ID: the certificate that signed the PInitRes or
    one the merchant renewed to since.

    A purchase a development snapshot recorded without its merchant's identity
    (``merchant`` None) is held to ``merchant_thumb`` alone, as then.
    """
    merchant = purchase.merchant
    if merchant is None:
        return signer(trust, MERCHANT, only=purchase.merchant_thumb)

    def resolve(
        signature: crypto_pb2.Signature, bundle: crypto_pb2.CertBundle
    ) -> tuple[PublicKey, VerifiedCertificate]:
        verified = trust.resolve(
            signature.signer_cert_thumb, bundle, MERCHANT, CertificateUsage.SIGNATURE
        )
        got = MerchantIdentity.of(verified)
        if got != merchant:
            raise fail(
                ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
                f"signed by merchant {got} (certificate {verified.thumbprint.hex()[:16]}), not"
                f" by {merchant}, the merchant the purchase was made with",
            )
        return verified.public_key, verified

    return resolve


def open_merchant_error(
    error: error_pb2.SetError,
    trust: TrustStore,
    purchase: PurchaseState,
    *,
    rrpid: bytes,
    request: bytes,
) -> PeerError | ProtocolError:
    """``open_error`` for an Error in place of a PRes or InqRes: the merchant's word only
    when ``merchant_signer`` accepts its signer, as for the answer it stands in for."""
    only = purchase.merchant_thumb
    if purchase.merchant is not None and error.WhichOneof("error") == "signed_error":
        # open_error pins one certificate: the one of this merchant that signed, once
        # found so. Anything else (several signatures, none) is left to open_error.
        try:
            signed = parse_signed(error.signed_error)
            if len(signed.signatures) == 1:
                resolve = merchant_signer(trust, purchase)
                only = resolve(signed.signatures[0], signed.bundle)[1].thumbprint
        except ProtocolError as exc:
            return ProtocolError(exc.code, f"the peer's error message did not verify: {exc.reason}")
    return open_error(error, trust, MERCHANT, rrpid=rrpid, request=request, only=only)


def check_answer_ids(got: common_pb2.TransIDs, offered: common_pb2.TransIDs, what: str) -> None:
    """The answer's TransIDs are those of the offer the purchase was made on, every field."""
    if not hmac.compare_digest(got.xid, offered.xid):
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, f"{what} is for another transaction")
    if got.lid_c != offered.lid_c:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, f"{what} is for another LID-C")
    if got.lid_m != offered.lid_m:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, f"{what} is for another LID-M")
    if got.SerializeToString(deterministic=True) != offered.SerializeToString(deterministic=True):
        raise fail(
            ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, f"{what} TransIDs differ from the offer's"
        )


def check_answer(data: purchase_pb2.PResData, purchase: PurchaseState, what: str) -> None:
    """The answer ``what`` is about ``purchase`` and reports what became of it:
    PAYLOADS_PER_ANSWER payload, with a completion code, and amounts within the agreed
    one."""
    check_answer_ids(data.trans_ids, purchase.trans_ids, what)
    payloads = data.payloads
    if len(payloads) != PAYLOADS_PER_ANSWER:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"{what} has {len(payloads)} payloads; one purchase has {PAYLOADS_PER_ANSWER}",
        )
    if payloads[0].completion_code == purchase_pb2.COMPLETION_CODE_UNSPECIFIED:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, f"{what} has no completion code")
    if purchase.purch_amt is not None:
        check_reported_amounts(payloads, purchase.purch_amt, what)


def check_reported_amounts(
    payloads: Sequence[purchase_pb2.PResPayload], agreed: common_pb2.CurrencyAmount, what: str
) -> None:
    """Every amount the answer reports is in the agreed currency and exponent and at most
    the agreed amount.

    Not "equal to": the gateway may authorize less than the purchase amount (never more,
    SET-PROTOCOL.md 9.3 item 11), a reversal lowers what stays authorized, and captures
    and refunds are parts of it; what no honest answer holds is more, or another unit.
    """
    for payload in payloads:
        for name in _REPORTED:
            if not payload.HasField(name):
                continue
            amount: common_pb2.CurrencyAmount = getattr(payload, name)
            if not same_unit(amount, agreed) or not 0 <= amount.amount <= agreed.amount:
                raise fail(
                    ErrorCode.ERROR_CODE_DECODING_FAILURE,
                    f"{what} reports {name} {amount.amount} (currency {amount.currency}, "
                    f"exponent {amount.exp10}) for a purchase of {agreed.amount} (currency "
                    f"{agreed.currency}, exponent {agreed.exp10})",
                )
