"""Whose Error a registration requester takes as its CA's word (``ca_error``).

An Error signed by a CA of the right type, naming the request's RRPID and digest, is
still not the word of the CA this registration is with if another CA of that type
signed it: one reached by a misrouted call or a changed target, which knows nothing of
the registration. Its UNKNOWN_LID would throw away a registration the right CA holds.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime

from setcore.error_message import open_error
from setcore.errors import ErrorCode, PeerError, ProtocolError, quoted
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.signed import parse_signed
from setpay.v1 import error_pb2


def ca_error(
    error: error_pb2.SetError,
    trust: TrustStore,
    ca_type: int,
    rrpid: bytes,
    *,
    request: bytes,
    only: bytes | None = None,
    brand: str | None = None,
    at: datetime | None = None,
) -> PeerError | ProtocolError:
    """A CA's Error as the exception to raise (``open_error``: naming ``rrpid`` and
    ``request``, the request's digest as sent), after installing the BCI it staples.

    A requester refused on its first message holds no BCI yet; the CA staples one to its
    Errors so that they can be verified. A stapled BCI that does not verify is ignored
    here: the Error's own verification then reports the failure.

    Whose word it is: ``only``, the thumbprint of the CA of this registration, once the
    requester knows it (its answers are taken from that CA alone, and so are its Errors:
    another CA of the same type, reached by a misrouted call or a changed target, knows
    nothing of the registration, and its UNKNOWN_LID would throw away one the right CA
    holds); before that, ``brand``, the brand the request was for. Either way an Error
    signed by anyone else is a ProtocolError naming the signer.
    """
    if error.WhichOneof("error") == "signed_error":
        with suppress(ProtocolError):
            trust.update_from_bundle(parse_signed(error.signed_error).bundle, at)
        if only is not None or brand is not None:
            unexpected = _unexpected_signer(error, trust, ca_type, only, brand, at)
            if unexpected is not None:
                return unexpected
    return open_error(error, trust, ca_type, rrpid=rrpid, request=request, only=only)


def _unexpected_signer(
    error: error_pb2.SetError,
    trust: TrustStore,
    ca_type: int,
    only: bytes | None,
    brand: str | None,
    at: datetime | None,
) -> ProtocolError | None:
    """A ProtocolError naming the signer of a CA's Error that is not ``only`` or not of
    ``brand``; None when it is (or cannot be read: ``open_error`` then says why)."""
    try:
        signed = parse_signed(error.signed_error)
        if not signed.signatures:
            return None
        thumb = signed.signatures[0].signer_cert_thumb
        if only is not None and thumb == only:
            return None
        cert = trust.resolve(thumb, signed.bundle, ca_type, CertificateUsage.SIGNATURE, at)
    except ProtocolError:
        return None
    if only is None and cert.brand_id == brand:
        return None
    who = f"{quoted(cert.subject_id)} (brand {quoted(cert.brand_id)})"
    return ProtocolError(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        f"the CA's error is signed by {who}, not by the CA of this registration",
    )
