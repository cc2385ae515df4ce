"""The dual signature: one cardholder signature that links the payment to the order.

    PIData digest  DD(PI)  = DD*("setpay.v1.PIData", PIHead bytes, PANData bytes)
    OIData digest  DD(OI)  = DD("setpay.v1.OIData", OIData bytes)
    PITBS                  = {DD(PI), DD(OI)}          signed by the cardholder
    PI  = PIDualSigned{ signature, Sealed(PITBE{PIHead, DD(OI), DD(PANData)},
                                         extra = PANData) to the gateway, PITBS bytes }
    OI  = OIDualSigned{ OIData bytes, DD(PI) }

The merchant holds OIData and DD(PI) and verifies the signature without seeing the PAN;
the gateway opens the PI, rebuilds DD(PI), takes DD(OI) from the sealed part and
verifies the same signature without seeing the order. Neither can swap its half. PIHead
names the gateway key the PI was sealed to and the merchant it is meant for
(SET-PROTOCOL.md 9.3.1), and each verifier checks the PITBS it was given holds exactly
the digests it computed itself before it checks the signature over those bytes.
PANData is padded to one size (``build_pan_data``): the merchant sees the extra part's
ciphertext, whose length would otherwise be the PAN's plus a constant.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from hsm.base import KemAlgorithm, KeyBackend, KeyHandle, PublicKey
from hsm.policy import P256_POINT_LENGTH
from setcore.encoding import check_bound_ids, content_type_of, digest, digest_parts, parse_strict
from setcore.envelope import AEAD_ALG, NONCE_BYTES, Recipient, open_sealed, seal
from setcore.errors import ErrorCode, fail
from setcore.pan import MAX_PAN_DIGITS, PAN
from setcore.signed import sign_detached, verify_detached
from setpay.v1 import crypto_pb2, purchase_pb2

PI_DATA_CONTENT_TYPE = "setpay.v1.PIData"
# The PAN is PANData's only field of varying size (13 to 19 digits; expiry, PANSecret and
# EXNonce have fixed ones, which the gateway checks). Zero padding brings the digits and
# the padding to 20 bytes together, one more than the longest PAN: a 19-digit PAN then
# still gets one byte, as proto3 would leave an empty padding field out and make its
# PANData two bytes shorter. So every PANData, and the PI's extra part the merchant
# sees, is of one size, which tells nothing of the card number's length.
PAN_DATA_PADDED_DIGITS = MAX_PAN_DIGITS + 1
OI_CT = content_type_of(purchase_pb2.OIData)
PI_HEAD_CT = content_type_of(purchase_pb2.PIHead)
PAN_DATA_CT = content_type_of(purchase_pb2.PANData)
PITBS_CT = content_type_of(purchase_pb2.PITBS)
PITBE_CT = content_type_of(purchase_pb2.PITBE)
# What a Sealed's header names the certificate it is sealed to by: its SHA-256 thumbprint.
THUMB_BYTES = hashlib.sha256().digest_size
_KEMS = frozenset(kem.value for kem in KemAlgorithm)
_P256_KEM = KemAlgorithm.P256_HKDF_SHA256.value


def pi_data_digest(pi_head: bytes, pan_data: bytes) -> bytes:
    """DD(PIData) over the exact PIHead and PANData bytes."""
    return digest_parts(PI_DATA_CONTENT_TYPE, (pi_head, pan_data))


def build_pan_data(pan: PAN, expiry: str, pan_secret: bytes, ex_nonce: bytes) -> bytes:
    """Wallet side: the PANData bytes for the PI, padded to PANData's one size."""
    digits = pan.reveal()
    return purchase_pb2.PANData(
        content_type=PAN_DATA_CT, pan=digits, card_expiry=expiry, pan_secret=pan_secret,
        ex_nonce=ex_nonce, padding=bytes(PAN_DATA_PADDED_DIGITS - len(digits)),
    ).SerializeToString()  # fmt: skip


def check_pan_data_padding(pan_data: purchase_pb2.PANData) -> None:
    """Gateway side: DECODING_FAILURE unless the padding is the zero bytes that bring this
    PAN to PAN_DATA_PADDED_DIGITS (a wallet that pads otherwise shows the PAN's length)."""
    wanted = PAN_DATA_PADDED_DIGITS - len(pan_data.pan)
    if wanted < 1 or pan_data.padding != bytes(wanted):
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PANData padding is not the agreed one")


def oi_data_digest(oi_data: bytes) -> bytes:
    """DD(OIData) over the exact OIData bytes."""
    return digest(OI_CT, oi_data)


@dataclass(frozen=True)
class DualSignedPurchase:
    """What the wallet sends: the two halves, serialized."""

    pi_dual_signed: bytes
    oi_dual_signed: bytes

    def to_proto(self) -> purchase_pb2.PReqDualSigned:
        """The PReqDualSigned wire message."""
        return purchase_pb2.PReqDualSigned(
            pi_dual_signed=self.pi_dual_signed, oi_dual_signed=self.oi_dual_signed
        )


def build_dual_signed(
    backend: KeyBackend,
    key: KeyHandle,
    cardholder_cert_thumb: bytes,
    cardholder_certs: crypto_pb2.CertBundle,
    oi_data: bytes,
    pi_head: bytes,
    pan_data: bytes,
    gateway: Recipient,
    *,
    xid: bytes,
    rrpid: bytes,
) -> DualSignedPurchase:
    """Wallet side: dual-sign, seal the PI (PAN in the extra part) to the gateway."""
    dd_oi = oi_data_digest(oi_data)
    dd_pi = pi_data_digest(pi_head, pan_data)
    pi_tbs = purchase_pb2.PITBS(
        content_type=PITBS_CT, dd_pi_data=dd_pi, dd_oi_data=dd_oi
    ).SerializeToString()
    signature = sign_detached(backend, key, cardholder_cert_thumb, PITBS_CT, pi_tbs)
    tbe = purchase_pb2.PITBE(
        content_type=PITBE_CT,
        pi_head=pi_head,
        dd_oi_data=dd_oi,
        dd_pan_data=digest(PAN_DATA_CT, pan_data),
    ).SerializeToString()
    ex_pi = seal(PITBE_CT, tbe, gateway, xid=xid, rrpid=rrpid, extra=(PAN_DATA_CT, pan_data))
    pi = purchase_pb2.PIDualSigned(
        pi_signature=signature, ex_pi=ex_pi, pi_tbs=pi_tbs, cardholder_certs=cardholder_certs
    )
    oi = purchase_pb2.OIDualSigned(oi_data=oi_data, dd_pi_data=dd_pi)
    return DualSignedPurchase(pi.SerializeToString(), oi.SerializeToString())


def _check_pi_tbs(pi_tbs: bytes, dd_pi: bytes, dd_oi: bytes) -> None:
    tbs = parse_strict(purchase_pb2.PITBS, pi_tbs)
    if not hmac.compare_digest(tbs.dd_oi_data, dd_oi):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "dual signature is over another order")
    if not hmac.compare_digest(tbs.dd_pi_data, dd_pi):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "dual signature is over another payment")


@dataclass(frozen=True)
class MerchantView:
    """What the merchant learns from a purchase request (never the PAN)."""

    pi: purchase_pb2.PIDualSigned
    pi_bytes: bytes
    oi_data: purchase_pb2.OIData
    oi_bytes: bytes
    dd_pi_data: bytes


def parse_purchase(p_req: bytes) -> MerchantView:
    """Merchant side, first step: parse both halves strictly (no signature checked yet)."""
    preq = parse_strict(purchase_pb2.PReqDualSigned, p_req)
    pi = parse_strict(purchase_pb2.PIDualSigned, preq.pi_dual_signed)
    oi = parse_strict(purchase_pb2.OIDualSigned, preq.oi_dual_signed)
    oi_data = parse_strict(purchase_pb2.OIData, oi.oi_data)
    return MerchantView(pi, preq.pi_dual_signed, oi_data, oi.oi_data, oi.dd_pi_data)


def verify_as_merchant(view: MerchantView, cardholder_key: PublicKey) -> None:
    """Merchant side: the signature covers this OIData and the PI digest it was given."""
    _check_pi_tbs(view.pi.pi_tbs, view.dd_pi_data, oi_data_digest(view.oi_bytes))
    verify_detached(cardholder_key, view.pi.pi_signature, PITBS_CT, view.pi.pi_tbs)


def check_pi_envelope(view: MerchantView, xid: bytes) -> None:
    """Merchant side: the PI's envelope says in clear what the gateway will hold it to.

    The merchant cannot open the PI, but it keeps it and forwards it byte for byte, and
    the envelope's header travels in clear: the content types, the algorithms, the
    certificate it is sealed to and the XID its AEAD binds. A PI whose header names
    anything but a PITBE with its PANData, sealed with an algorithm on the allow-list to
    a certificate's thumbprint for this very transaction, is one the gateway refuses
    (``setcore.envelope``): taken, it would be kept, answered "order received" and sent
    off to fail, and its strings kept whatever the wallet wrote in them (a card number
    among them). DECODING_FAILURE, ALGORITHM_NOT_ALLOWED for another algorithm,
    DECRYPTION_FAILURE for a nonce or P-256 KEM ciphertext of another length (as the
    gateway says it), or WRAPPER_MSG_MISMATCH for another transaction's XID; nothing is
    kept. Which of its key-exchange certificates the thumbprint names, and the
    ciphertexts, stay the gateway's to judge (an older certificate still opens what was
    sealed to it).
    """
    sealed = view.pi.ex_pi
    if sealed.content_type != PITBE_CT or sealed.extra_content_type != PAN_DATA_CT:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE, "the PI is not a PITBE sealed with its PANData"
        )
    if sealed.aead_alg != AEAD_ALG or sealed.kem_alg not in _KEMS:
        raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "the PI is sealed otherwise")
    if len(sealed.recipient_cert_thumb) != THUMB_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "the PI names no certificate")
    # The lengths the gateway checks before it uses a key (``envelope._check_header``).
    if len(sealed.nonce) != NONCE_BYTES or len(sealed.extra_nonce) != NONCE_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "the PI's nonces are not 12 bytes")
    if sealed.kem_alg == _P256_KEM and len(sealed.kem_ciphertext) != P256_POINT_LENGTH:
        raise fail(
            ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "the PI's KEM ciphertext is not a point"
        )
    check_bound_ids(sealed.xid, sealed.rrpid)
    if not hmac.compare_digest(sealed.xid, xid):
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "the PI is for another transaction")


@dataclass(frozen=True)
class GatewayView:
    """What the gateway learns from the PI (never the order description)."""

    pi: purchase_pb2.PIDualSigned
    pi_head: purchase_pb2.PIHead
    pan_data: purchase_pb2.PANData
    dd_oi_data: bytes
    dd_pi_data: bytes

    def __repr__(self) -> str:
        return f"GatewayView(xid={self.pi_head.trans_ids.xid.hex()[:16]}...)"


def open_payment_instruction(
    pi_bytes: bytes,
    backend: KeyBackend,
    key: KeyHandle,
    my_cert_thumb: bytes,
    *,
    xid: bytes,
) -> GatewayView:
    """Gateway side: open the PI sealed to this gateway and check its internal links.

    The signature is checked by ``verify_as_gateway`` once the cardholder's
    certificate is resolved.
    """
    pi = parse_strict(purchase_pb2.PIDualSigned, pi_bytes)
    return open_parsed_payment_instruction(pi, backend, key, my_cert_thumb, xid=xid)


def open_parsed_payment_instruction(
    pi: purchase_pb2.PIDualSigned,
    backend: KeyBackend,
    key: KeyHandle,
    my_cert_thumb: bytes,
    *,
    xid: bytes,
) -> GatewayView:
    """``open_payment_instruction`` of a PI already parsed (strictly): by a caller that read
    whom it is sealed to first, to choose the key that opens it."""
    opened = open_sealed(
        pi.ex_pi, backend, key, my_cert_thumb, PITBE_CT, extra_type=PAN_DATA_CT, xid=xid
    )
    sealed_pan_data = opened.extra
    if sealed_pan_data is None:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PI carries no PANData")
    tbe = parse_strict(purchase_pb2.PITBE, opened.plaintext)
    if not hmac.compare_digest(tbe.dd_pan_data, digest(PAN_DATA_CT, sealed_pan_data)):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "PANData is not the linked one")
    head = parse_strict(purchase_pb2.PIHead, tbe.pi_head)
    pan_data = parse_strict(purchase_pb2.PANData, sealed_pan_data)
    if not hmac.compare_digest(head.pe_thumb, my_cert_thumb):
        raise fail(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, "PI names another gateway key")
    if head.trans_ids.xid != xid:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "PI is for another transaction")
    return GatewayView(
        pi=pi,
        pi_head=head,
        pan_data=pan_data,
        dd_oi_data=tbe.dd_oi_data,
        dd_pi_data=pi_data_digest(tbe.pi_head, sealed_pan_data),
    )


def verify_as_gateway(view: GatewayView, cardholder_key: PublicKey) -> None:
    """Gateway side: the signature covers this PI and the order digest sealed with it."""
    _check_pi_tbs(view.pi.pi_tbs, view.dd_pi_data, view.dd_oi_data)
    verify_detached(cardholder_key, view.pi.pi_signature, PITBS_CT, view.pi.pi_tbs)
