"""The SET Error message: signed by a party that has a signature key, never detailed.

An Error says "I could not process your message" with a code and a fixed text for that
code; which check failed stays in the local log (SET-PROTOCOL.md 7.6: no padding-oracle
style detail). A fresh nonce means the signer never signs only attacker-chosen data.

The offending request is identified by its RRPID and by ``request_digest``: SET echoes
the offending message in the Error; we sign its digest instead, over the request's bytes
as received, typed by the call's request frame, the very digest a gateway answer names
its request by. The RRPID alone comes from a plaintext header anyone on the path can
copy: garbage sent under a victim's RRPID would get a genuine Error the victim took for
the refusal of its own request, which had in fact been applied. The digest binds the
Error to the exact bytes it refuses, in the call they came in (the same bytes sent to
another method are another request).
"""

from __future__ import annotations

import hmac

from setcore.credentials import Credentials
from setcore.encoding import content_type_of, parse_strict
from setcore.enum_names import code_name
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id, now_ms
from setcore.gateway_exchange import request_digest
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.signed import SignerResolver, open_signed, parse_signed, sign
from setcore.signers import GatewayIdentity, gateway_signer, signer
from setpay.v1 import error_pb2

ERROR_CT = content_type_of(error_pb2.ErrorTBS)

__all__ = [
    "ERROR_CT",
    "build_error",
    "error_text",
    "open_error",
    "open_gateway_error",
    "request_digest",
]


def error_text(code: int) -> str:
    """The fixed, detail-free text that accompanies a code ("errorcode 99" for one
    this build does not define)."""
    return code_name(ErrorCode, code).removeprefix("ERROR_CODE_").replace("_", " ").lower()


def build_error(
    credentials: Credentials | None,
    code: int,
    *,
    rrpid: bytes = b"",
    request: bytes = b"",
    error_thumb: bytes = b"",
) -> error_pb2.SetError:
    """A SetError for ``code``: signed when ``credentials`` are given, plain otherwise.

    ``request``: the ``request_digest`` of the request refused, over its bytes as
    received; empty when there is none to name (no requester takes such an Error for
    the answer to its own request).
    """
    tbs = error_pb2.ErrorTBS(
        content_type=ERROR_CT,
        error_code=code,  # type: ignore[arg-type]
        error_nonce=new_id(),
        error_thumb=error_thumb,
        rrpid=rrpid,
        bad_message_digest=request,
        error_msg=error_text(code),
        date_unix_ms=now_ms(),
    )
    if credentials is None:
        return error_pb2.SetError(unsigned_error=tbs)
    signed = sign(
        credentials.backend,
        credentials.signature_key,
        credentials.signature_thumb,
        ERROR_CT,
        tbs.SerializeToString(),
        credentials.bundle(),
    )
    return error_pb2.SetError(signed_error=signed.SerializeToString())


def open_error(
    error: error_pb2.SetError,
    trust: TrustStore,
    signer_type: int,
    *,
    rrpid: bytes,
    request: bytes,
    only: bytes | None = None,
) -> PeerError | ProtocolError:
    """A peer's Error as the exception to raise: ``PeerError`` when it is the peer's word
    on our request, ``ProtocolError`` when it is not.

    It is the peer's word when it is signed by a party of ``signer_type`` whose chain
    verifies, and names both ``rrpid``, the RRPID of the request it answers, and
    ``request``, that request's ``request_digest`` over the bytes we sent (SET-PROTOCOL.md
    7.6: an Error identifies the message it refuses). An Error that is unsigned, does not
    verify or answers another request (other bytes under our RRPID among them) says
    nothing about what the peer did with ours: a ``ProtocolError``, so that the requester
    treats it as an answer it could not check (an operation it stays unsure of, the same
    bytes sent again), never as a refusal. Any gateway of the brand is taken for a
    PAYMENT_GATEWAY here, which only PCertRes wants (the answer the merchant learns its
    gateway from); every later answer is opened by ``open_gateway_error``.
    ``only``: the thumbprint of the one certificate whose word it may be (the merchant
    a purchase was made with), as for the answer it stands in for.
    """
    return _open(error, signer(trust, signer_type, only=only), rrpid, request)


def open_gateway_error(
    error: error_pb2.SetError,
    trust: TrustStore,
    gateway: GatewayIdentity,
    *,
    rrpid: bytes,
    request: bytes,
) -> PeerError | ProtocolError:
    """``open_error`` for the merchant's gateway: its word only when signed by a
    certificate of ``gateway`` (``signers.gateway_signer``)."""
    return _open(error, gateway_signer(trust, gateway), rrpid, request)


def _open(
    error: error_pb2.SetError,
    resolve: SignerResolver[VerifiedCertificate],
    rrpid: bytes,
    request: bytes,
) -> PeerError | ProtocolError:
    if error.WhichOneof("error") != "signed_error":
        return ProtocolError(
            ErrorCode.ERROR_CODE_SIGNATURE_REQUIRED, "unsigned error from the peer"
        )
    try:
        verified = open_signed(parse_signed(error.signed_error), ERROR_CT, resolve)
        tbs = parse_strict(error_pb2.ErrorTBS, verified.tbs)
    except ProtocolError as exc:
        return ProtocolError(exc.code, f"the peer's error message did not verify: {exc.reason}")
    if not hmac.compare_digest(tbs.rrpid, rrpid):
        return ProtocolError(
            ErrorCode.ERROR_CODE_UNKNOWN_RRPID, "the peer's error answers another request"
        )
    # An empty digest names no request: two of them agreeing would prove nothing.
    if not request or not hmac.compare_digest(tbs.bad_message_digest, request):
        return ProtocolError(
            ErrorCode.ERROR_CODE_DIGEST_MISMATCH,
            "the peer's error answers other bytes under our RRPID",
        )
    return PeerError(tbs.error_code, tbs.error_msg)
