"""SET's L(t1, t2): t1 together with a digest of t2, and the composite envelopes built on it.

    Enc(s, r, t)      = Sealed(Signed(t))                             sign, then seal
    EncB(s, r, t, b)  = SealedWithBaggage(Sealed(Signed(Link{t, DD(b)})), baggage = b)

Baggage (the cardholder's PI inside AuthReq, capture tokens inside CapReq) travels
beside the envelope byte for byte; the sender's signature covers its digest, so the
receiver knows the signed request is about exactly this baggage.
"""

from __future__ import annotations

import hmac
from typing import TypeVar

from hsm.base import KeyBackend, KeyHandle
from setcore.encoding import content_type_of, digest, parse_strict
from setcore.envelope import Recipient, open_sealed, seal
from setcore.errors import ErrorCode, fail
from setcore.signed import SignerResolver, VerifiedSigned, open_signed, parse_signed, sign
from setpay.v1 import crypto_pb2

LINK_CONTENT_TYPE = content_type_of(crypto_pb2.Link)

V = TypeVar("V")


def link_content_type(t1_content_type: str) -> str:
    """The content type a Link over ``t1_content_type`` is signed and sealed under."""
    return f"{LINK_CONTENT_TYPE}({t1_content_type})"


def make_link(t1_content_type: str, t1: bytes, t2_content_type: str, t2: bytes) -> bytes:
    """Serialize L(t1, t2)."""
    return crypto_pb2.Link(
        content_type=LINK_CONTENT_TYPE,
        t1=t1,
        t1_content_type=t1_content_type,
        dd_t2=digest(t2_content_type, t2),
        t2_content_type=t2_content_type,
    ).SerializeToString()


def check_link(link_bytes: bytes, t1_content_type: str, t2_content_type: str, t2: bytes) -> bytes:
    """Parse a Link, check its types and that it names exactly ``t2``; return t1."""
    link = parse_strict(crypto_pb2.Link, link_bytes)
    if link.t1_content_type != t1_content_type or link.t2_content_type != t2_content_type:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "link carries unexpected types")
    if not hmac.compare_digest(link.dd_t2, digest(t2_content_type, t2)):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, f"{t2_content_type} is not the linked one")
    return link.t1


def seal_signed(
    backend: KeyBackend,
    key: KeyHandle,
    signer_thumb: bytes,
    content_type: str,
    tbs: bytes,
    recipient: Recipient,
    *,
    xid: bytes = b"",
    rrpid: bytes = b"",
    bundle: crypto_pb2.CertBundle | None = None,
    extra: tuple[str, bytes] | None = None,
) -> crypto_pb2.Sealed:
    """Enc / EncX: sign ``tbs`` then seal the Signed to ``recipient``."""
    signed = sign(backend, key, signer_thumb, content_type, tbs, bundle)
    return seal(
        content_type, signed.SerializeToString(), recipient, xid=xid, rrpid=rrpid, extra=extra
    )


def open_sealed_signed(
    sealed: crypto_pb2.Sealed,
    backend: KeyBackend,
    key: KeyHandle,
    my_thumb: bytes,
    content_type: str,
    resolve: SignerResolver[V],
    *,
    extra_type: str | None = None,
    xid: bytes | None = None,
    rrpid: bytes | None = None,
) -> tuple[VerifiedSigned[V], bytes | None]:
    """Open Enc / EncX: the verified signed bytes and the extra part, if any."""
    opened = open_sealed(
        sealed, backend, key, my_thumb, content_type, extra_type=extra_type, xid=xid, rrpid=rrpid
    )
    signed = parse_signed(opened.plaintext)
    return open_signed(signed, content_type, resolve), opened.extra


def seal_with_baggage(
    backend: KeyBackend,
    key: KeyHandle,
    signer_thumb: bytes,
    content_type: str,
    tbs: bytes,
    baggage_type: str,
    baggage: bytes,
    recipient: Recipient,
    *,
    xid: bytes = b"",
    rrpid: bytes = b"",
    bundle: crypto_pb2.CertBundle | None = None,
) -> crypto_pb2.SealedWithBaggage:
    """EncB: sign a Link{tbs, DD(baggage)}, seal it, carry the baggage beside it."""
    link = make_link(content_type, tbs, baggage_type, baggage)
    sealed = seal_signed(
        backend,
        key,
        signer_thumb,
        link_content_type(content_type),
        link,
        recipient,
        xid=xid,
        rrpid=rrpid,
        bundle=bundle,
    )
    return crypto_pb2.SealedWithBaggage(
        sealed=sealed, baggage=baggage, baggage_content_type=baggage_type
    )


def open_with_baggage(
    envelope: crypto_pb2.SealedWithBaggage,
    backend: KeyBackend,
    key: KeyHandle,
    my_thumb: bytes,
    content_type: str,
    baggage_type: str,
    resolve: SignerResolver[V],
    *,
    xid: bytes | None = None,
    rrpid: bytes | None = None,
) -> tuple[bytes, VerifiedSigned[V]]:
    """Open EncB: verify the signed link and that it names exactly the baggage carried.

    Returns the signed t (still bytes, for the caller to parse strictly) and the
    verified Signed; the baggage is ``envelope.baggage``.
    """
    if envelope.baggage_content_type != baggage_type:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "unexpected baggage type")
    verified, _ = open_sealed_signed(
        envelope.sealed,
        backend,
        key,
        my_thumb,
        link_content_type(content_type),
        resolve,
        xid=xid,
        rrpid=rrpid,
    )
    t1 = check_link(verified.tbs, content_type, baggage_type, envelope.baggage)
    return t1, verified
