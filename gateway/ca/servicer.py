"""The gRPC face of the certificate authority: decode, call ``CertificateAuthority``, encode.

Outcomes, in the one place they are mapped (DESIGN.md 5.2):

    a certificate status (issued, pended, refused)    the normal signed response
    ProtocolError                                     the response's ``error``: a SetError
                                                      signed by the answering CA, its code
                                                      and a fixed text; the reason goes to
                                                      the local log only
    ca.db, the issuer or the key backend unavailable, gRPC UNAVAILABLE "certificate
    or no current revocation data (``CaUnavailable``, authority <what> unavailable", in
    ``TransientBackendError``)                        every call, signed or not: the client
                                                      sends the same bytes again later;
                                                      never a SET Error, which it would
                                                      record as a refusal
    a key backend failure retrying cannot fix         as the gateway answers it
    (any other ``KeyBackendError``: a key deleted,    (``gateway.answers``): a signed
    the PIN refused)                                  UNSPECIFIED_FAILURE Error, the cause
                                                      logged in a line; INTERNAL on the
                                                      unsigned reads
    anything else (a bug: ``StoreBug`` and            a signed UNSPECIFIED_FAILURE Error;
    ``ConstraintViolation`` among them)               the two unsigned reads
                                                      (GetBrandCRLIdentifier,
                                                      GetCertificates), which have no Error
                                                      to answer with, gRPC INTERNAL
                                                      "certificate authority internal
                                                      error"; the traceback is logged here,
                                                      never sent to the peer
    an Error the key backend cannot sign (any         gRPC UNAVAILABLE "certificate
    ``KeyBackendError``)                              authority key backend unavailable",
                                                      as the gateway answers it: there is
                                                      no refusal to send
    GetBrandCRLIdentifier naming another brand        gRPC NOT_FOUND "brand not served
                                                      here": an unsigned read has no
                                                      Error to answer with

A reply echoes the request's RRPID, in its header and in a signed Error, only when it has
an RRPID's size (``setcore.echoed_ids``): anyone may call this port without a client
certificate, and an RRPID of hundreds of kilobytes, echoed twice, made a reply past the
message limit, refused by gRPC instead of answered. ``_answer`` trims it, once for every
call and whatever the answer, as ``gateway.answers`` does for the gateway's.

Every SET Error answered is counted (``setpay_rpc_errors_total{method,code}``), as the
gateway's are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import grpc
from google.protobuf.message import Message

from gateway import metrics
from gateway.ca.authority import CertificateAuthority
from gateway.ca.errors import CaUnavailable
from hsm.errors import KeyBackendError, TransientBackendError
from setcore.echoed_ids import echoed_id
from setcore.error_message import build_error, request_digest
from setcore.errors import ErrorCode, ProtocolError
from setcore.purchase import header
from setpay.v1 import common_pb2, crypto_pb2, error_pb2, registration_pb2, services_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

# The bank's own parts being away (``_outages_unavailable``): never taken for a bug.
_OUTAGES = (CaUnavailable, TransientBackendError)


def _unavailable(context: grpc.ServicerContext, what: str) -> NoReturn:
    context.abort(grpc.StatusCode.UNAVAILABLE, f"certificate authority {what} unavailable")
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


def _internal(context: grpc.ServicerContext) -> NoReturn:
    context.abort(grpc.StatusCode.INTERNAL, "certificate authority internal error")
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


def _outage(request: object, exc: CaUnavailable) -> None:
    # An outage of the bank's own parts, logged here with its cause's words (never a
    # PAN: ca.db keeps none, the issuer's errors name none); the peer gets ``what`` only.
    cause = exc.__cause__
    log.warning(
        "%s: certificate authority %s unavailable: %s%s", type(request).__name__, exc.what,
        exc, f" ({type(cause).__name__}: {cause})" if cause is not None else "",
    )  # fmt: skip


@contextmanager
def _outages_unavailable(context: grpc.ServicerContext, request: object) -> Iterator[None]:
    """Every call's answer to an outage of the bank's own parts: UNAVAILABLE.

    Around all of a call's work, the signing of its Error included; a call's own rung for
    bugs sits inside and lets ``_OUTAGES`` through to here, so that ``context.abort``'s
    exception never meets a catch-all.
    """
    try:
        yield
    except CaUnavailable as exc:
        _outage(request, exc)
        _unavailable(context, exc.what)
    except TransientBackendError as exc:
        # The backend's words name a token or a label, never a PIN or key material.
        log.warning(
            "%s: certificate authority key backend unavailable: %s: %s",
            type(request).__name__, type(exc).__name__, exc,
        )  # fmt: skip
        _unavailable(context, "key backend")


def _failed(request: object, exc: Exception) -> None:
    """Log a failure answered as a bug: a key backend's in a line (what the operator has
    to fix: a key deleted, the PIN refused), anything else with its traceback."""
    if isinstance(exc, KeyBackendError):
        log.error(
            "%s: certificate authority key backend failed: %s: %s",
            type(request).__name__, type(exc).__name__, exc,
        )  # fmt: skip
    else:
        log.exception("unexpected failure answering %s", type(request).__name__)


def _read(context: grpc.ServicerContext, request: object, read: Callable[[], T]) -> T:
    """An unsigned read's result: ProtocolError passes to the caller, an outage is
    UNAVAILABLE, anything else INTERNAL (the read's response has no SET Error to carry)."""
    with _outages_unavailable(context, request):
        try:
            return read()
        except (ProtocolError, *_OUTAGES):
            raise
        except Exception as exc:  # noqa: BLE001  logged by _failed, answered as a bug
            _failed(request, exc)
            _internal(context)


class CertificateAuthorityServicer(services_pb2_grpc.CertificateAuthorityServiceServicer):
    """``setpay.v1.CertificateAuthorityService`` over a ``CertificateAuthority``."""

    def __init__(self, authority: CertificateAuthority) -> None:
        self._ca = authority

    def _answer(
        self,
        context: grpc.ServicerContext,
        request: Message,
        rrpid: bytes,
        raw: bytes,
        work: Callable[[], bytes],
    ) -> tuple[common_pb2.Header, bytes, error_pb2.SetError | None]:
        """The reply's header and either ``work()``'s body or the refusal's signed Error.

        ``rrpid`` is the request's as sent: the header and the Error echo it only where it
        has an RRPID's size (``setcore.echoed_ids``), trimmed here for every answer."""
        echoed = echoed_id(rrpid)
        with _outages_unavailable(context, request):
            try:
                body = work()
                return header(rrpid=echoed), body, None
            except ProtocolError as exc:
                log.info("%s refused: %s", type(request).__name__, exc)
                code = exc.code
            except _OUTAGES:
                raise
            except Exception as exc:  # noqa: BLE001  logged by _failed, answered as a bug
                _failed(request, exc)
                code = ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE
            signer = self._ca.error_signer(request)
            try:
                sent = request_digest(request.DESCRIPTOR.full_name, raw)
                error = build_error(signer, code, rrpid=echoed, request=sent)
            except KeyBackendError as exc:
                # No Error to send, whatever the backend's trouble: UNAVAILABLE, as the
                # gateway answers (gateway.answers), rather than gRPC's UNKNOWN.
                log.log(
                    logging.WARNING if isinstance(exc, TransientBackendError) else logging.ERROR,
                    "%s: certificate authority key backend cannot sign the Error: %s: %s",
                    type(request).__name__, type(exc).__name__, exc,
                )  # fmt: skip
                _unavailable(context, "key backend")
        # Counted like the gateway's (gateway.answers), once the refusal is answered: the
        # RPC is the request type's name.
        metrics.refused(type(request).__name__.removesuffix("Request"), code)
        return header(rrpid=echoed), b"", self._staple(error)

    def _staple(self, error: error_pb2.SetError) -> error_pb2.SetError:
        # A requester whose first message is refused holds no BCI yet; without one it
        # could not verify the Error. The bundle is unsigned, so adding to it leaves the
        # signed bytes as they are.
        revocation = self._ca.watcher.current()
        if revocation is None or error.WhichOneof("error") != "signed_error":
            return error
        signed = crypto_pb2.Signed.FromString(error.signed_error)
        signed.bundle.brand_crl_identifier = revocation.bci
        signed.bundle.crls.extend(revocation.crls)
        return error_pb2.SetError(signed_error=signed.SerializeToString())

    def CardCInit(  # noqa: N802 - gRPC method name
        self,
        request: registration_pb2.CardCInitRequest,
        context: grpc.ServicerContext,
        received: bytes | None = None,
    ) -> registration_pb2.CardCInitResponse:
        """Cardholder step 1; ``received``: the bytes the request came as (``_frame``)."""
        reply, body, error = self._answer(
            context, request, request.rrpid, _frame(request, received),
            lambda: self._ca.card_c_init(request),
        )  # fmt: skip
        response = registration_pb2.CardCInitResponse(header=reply)
        if error is not None:
            response.error.CopyFrom(error)
        else:
            response.card_c_init_res = body
        return response

    def RegForm(  # noqa: N802 - gRPC method name
        self, request: registration_pb2.RegFormRequest, context: grpc.ServicerContext
    ) -> registration_pb2.RegFormResponse:
        """Cardholder step 2."""
        reply, body, error = self._answer(
            context, request, request.header.rrpid, request.reg_form_req,
            lambda: self._ca.reg_form(request),
        )  # fmt: skip
        response = registration_pb2.RegFormResponse(header=reply)
        if error is not None:
            response.error.CopyFrom(error)
        else:
            response.reg_form_res = body
        return response

    def MeAqCInit(  # noqa: N802 - gRPC method name
        self,
        request: registration_pb2.MeAqCInitRequest,
        context: grpc.ServicerContext,
        received: bytes | None = None,
    ) -> registration_pb2.MeAqCInitResponse:
        """Merchant or gateway step 1; ``received`` as for CardCInit."""
        reply, body, error = self._answer(
            context, request, request.rrpid, _frame(request, received),
            lambda: self._ca.me_aq_c_init(request),
        )  # fmt: skip
        response = registration_pb2.MeAqCInitResponse(header=reply)
        if error is not None:
            response.error.CopyFrom(error)
        else:
            response.me_aq_c_init_res = body
        return response

    def Cert(  # noqa: N802 - gRPC method name
        self, request: registration_pb2.CertRequest, context: grpc.ServicerContext
    ) -> registration_pb2.CertResponse:
        """Issue or renew certificates."""
        reply, body, error = self._answer(
            context, request, request.header.rrpid, request.cert_req,
            lambda: self._ca.cert(request),
        )  # fmt: skip
        response = registration_pb2.CertResponse(header=reply)
        if error is not None:
            response.error.CopyFrom(error)
        else:
            response.cert_res = body
        return response

    def CertInq(  # noqa: N802 - gRPC method name
        self, request: registration_pb2.CertInqRequest, context: grpc.ServicerContext
    ) -> registration_pb2.CertInqResponse:
        """Poll a pended request."""
        reply, body, error = self._answer(
            context, request, request.header.rrpid, request.cert_inq_req,
            lambda: self._ca.cert_inq(request),
        )  # fmt: skip
        response = registration_pb2.CertInqResponse(header=reply)
        if error is not None:
            response.error.CopyFrom(error)
        else:
            response.cert_res = body
        return response

    def GetBrandCRLIdentifier(  # noqa: N802 - gRPC method name
        self,
        request: registration_pb2.GetBrandCRLIdentifierRequest,
        context: grpc.ServicerContext,
    ) -> registration_pb2.GetBrandCRLIdentifierResponse:
        """The current BCI and the CRLs it lists."""
        if request.brand_id and request.brand_id != self._ca.keys.brand_id:
            context.abort(grpc.StatusCode.NOT_FOUND, "brand not served here")
        try:
            current = _read(context, request, self._ca.brand_crl_identifier)
        except ProtocolError:
            log.error("no revocation data published to serve")
            _unavailable(context, "revocation data")
        return registration_pb2.GetBrandCRLIdentifierResponse(
            header=header(), brand_crl_identifier=current.bci, crls=current.crls
        )

    def GetCertificates(  # noqa: N802 - gRPC method name
        self, request: registration_pb2.GetCertificatesRequest, context: grpc.ServicerContext
    ) -> registration_pb2.GetCertificatesResponse:
        """Certificates by thumbprint."""
        try:
            found = _read(context, request, lambda: self._ca.certificates(list(request.thumbs)))
        except ProtocolError as exc:
            if exc.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "too many thumbprints")
            # A guard: the watcher logs its own failures and raises RevocationStale only.
            log.exception("no revocation data to serve")
            _unavailable(context, "revocation data")
        return registration_pb2.GetCertificatesResponse(header=header(), certificates=found)


def _frame(request: Message, received: bytes | None) -> bytes:
    """What the Error names for a request that is its call's frame itself (CardCInit,
    Me-AqCInit), not a SET message in a bytes field of it (RegForm, Cert, CertInq).

    The bytes it came as, which ``gateway.server`` passes to a method taking ``received``:
    parsed and serialized again, a request may differ from them (its fields in another
    order, a varint written shorter, an unknown field dropped), and its requester could
    not tell the Error answers what it sent. A direct call, without them, gets the
    serialization.
    """
    return request.SerializeToString() if received is None else received
