"""Gateway administration: PCertReq/PCertRes and BatchAdminReq/Res (SET-PROTOCOL.md 7.4, 7.5).

    PCertReq      = S(M, PCertReqData)
    PCertRes      = S(P, PCertResTBS)       gateway certificates and their chain in the bundle
    BatchAdminReq = Enc(M, P, BatchAdminReqData)
    BatchAdminRes = Enc(P, M, BatchAdminResData)

PCertRes tells the merchant which gateway key-exchange certificate to name in PInitRes,
so the PI is sealed to it: the merchant verifies the gateway's signature and chain, then
each thumbprint the gateway signed as a PAYMENT_GATEWAY certificate of the right usage
(key exchange, signature) of the brand asked for. PCert is signed only: it carries no
secret, and the merchant may not yet know a gateway key to seal to.

Gateway openers check the merchant's signature and chain, the RRTags (ids, date, merchant
id; for BatchAdmin the response key and the gateway certificate it is sealed to), and the
request's bounds. What a batch operation does is the ledger's decision (a BatchAdminStatus).

Errors are setcore's, as listed in ``setcore.capture``, plus DECODING_FAILURE for no or
malformed brand/BIN entries, an unknown batch operation, a missing batch id (or one
named for a batch to open), a page larger than MAX_TRANSACTION_DETAILS or starting past
MAX_STARTING_POINT, and answers about other brands or batches;
WRONG_CERTIFICATE_ROLE / MISSING_CERTIFICATE / INVALID_CERTIFICATE from the PKI for a
PCertRes thumbprint that is not a gateway certificate of the right usage and brand, or of
another gateway than the PCertRes's signer: the merchant takes answers only from the
gateway (the subject name) whose signature certificate its PCertRes named
(``signers.GatewayIdentity``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from setcore.capture import (
    check_batch_id,
    check_envelope_xid,
    check_one_per_item,
    merchant_rr_tags,
    open_gateway_sealed,
    open_merchant_sealed,
    seal_to_merchant,
)
from setcore.credentials import Credentials
from setcore.encoding import content_type_of, parse_strict, thumbprint
from setcore.envelope import Recipient
from setcore.error_message import open_error, open_gateway_error
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_date, check_id, check_rrpid, new_id, now_ms
from setcore.gateway_exchange import check_names_us, check_rr_tags, merchant_id_of, request_digest
from setcore.link import seal_signed
from setcore.pan import is_bin
from setcore.pki.roles import MERCHANT, PAYMENT_GATEWAY, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import check_header_without_transaction, header
from setcore.signed import VerifiedSigned, open_signed, parse_signed, sign
from setcore.signers import GatewayIdentity, signer
from setpay.v1 import common_pb2, crypto_pb2, gateway_admin_pb2

PCERT_REQ_CT = content_type_of(gateway_admin_pb2.PCertReqData)
PCERT_RES_CT = content_type_of(gateway_admin_pb2.PCertResTBS)
BATCH_ADMIN_REQ_CT = content_type_of(gateway_admin_pb2.BatchAdminReqData)
BATCH_ADMIN_RES_CT = content_type_of(gateway_admin_pb2.BatchAdminResData)
GATEWAY_CERTIFICATES_REQUEST_CT = content_type_of(gateway_admin_pb2.GatewayCertificatesRequest)
BATCH_ADMIN_REQUEST_CT = content_type_of(gateway_admin_pb2.BatchAdminRequest)

# A merchant asks for the brands it accepts, each with at most a few BIN ranges; 32
# entries cover that and bound the certificate resolutions one answer costs the merchant.
MAX_BRAND_AND_BINS = 32
# One page of a batch's transaction list; a batch of thousands is read in several pages,
# so one answer stays far below the message size limit.
MAX_TRANSACTION_DETAILS = 500
# A page starts after a sequence number the gateway gave, and gateways count them in
# 64-bit signed integers; the uint64 on the wire can say more, which no store can look up.
# Refused here, before a close is committed whose answer's page could never be read.
MAX_STARTING_POINT = 2**63 - 1
# SET's BIN: the first six digits of the PAN (as in PInitReq).
# Brand ids are short names such as the brand root's; 64 is X.509's CommonName bound.
MAX_BRAND_ID_CHARS = 64

SUCCESS = gateway_admin_pb2.P_CERT_CODE_SUCCESS
_OPERATIONS = frozenset(
    {
        gateway_admin_pb2.BATCH_OPERATION_OPEN,
        gateway_admin_pb2.BATCH_OPERATION_PURGE,
        gateway_admin_pb2.BATCH_OPERATION_REQUEST,
        gateway_admin_pb2.BATCH_OPERATION_CLOSE,
    }
)


# --- merchant side: PCertReq --------------------------------------------------------


@dataclass(frozen=True)
class PCertRequestState:
    """What the merchant remembers to check the PCertRes against."""

    rrpid: bytes
    request_digest: bytes
    brand_and_bins: tuple[tuple[str, str], ...]


def build_pcert_request(
    credentials: Credentials,
    brand_and_bins: Sequence[tuple[str, str]],
    merchant_id: str,
    *,
    rrpid: bytes | None = None,
) -> tuple[gateway_admin_pb2.GatewayCertificatesRequest, PCertRequestState]:
    """PCertReq: the merchant's signed request for gateway certificates, per (brand, BIN)."""
    rrpid = rrpid or new_id()
    data = gateway_admin_pb2.PCertReqData(
        content_type=PCERT_REQ_CT,
        p_cert_rr_tags=merchant_rr_tags(credentials, merchant_id, rrpid, None),
        brand_and_bins=[common_pb2.BrandAndBIN(brand_id=b, bin=n) for b, n in brand_and_bins],
    ).SerializeToString()
    signed = sign(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        PCERT_REQ_CT, data, credentials.bundle(),
    ).SerializeToString()  # fmt: skip
    request = gateway_admin_pb2.GatewayCertificatesRequest(
        header=header(rrpid=rrpid), p_cert_req=signed
    )
    digest = request_digest(GATEWAY_CERTIFICATES_REQUEST_CT, signed)
    return request, PCertRequestState(rrpid, digest, tuple(brand_and_bins))


# --- gateway side: PCertReq and PCertRes --------------------------------------------


@dataclass(frozen=True)
class VerifiedPCertRequest:
    """A PCertReq whose merchant signature, chain and tags have been verified."""

    data: gateway_admin_pb2.PCertReqData
    merchant: VerifiedCertificate
    merchant_id: str
    request_digest: bytes

    @property
    def rrpid(self) -> bytes:
        """The RRPID of this request."""
        return self.data.p_cert_rr_tags.rrpid


def _check_brand_and_bins(entries: Sequence[common_pb2.BrandAndBIN]) -> None:
    if not entries or len(entries) > MAX_BRAND_AND_BINS:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE, f"1..{MAX_BRAND_AND_BINS} brand/BINs expected"
        )
    for entry in entries:
        if not 0 < len(entry.brand_id) <= MAX_BRAND_ID_CHARS:
            raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "brand id missing or too long")
        if entry.bin and not is_bin(entry.bin):
            raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "BIN must be six digits")


def open_pcert_request(
    request: gateway_admin_pb2.GatewayCertificatesRequest,
    trust: TrustStore,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> VerifiedPCertRequest:
    """Verify a PCertReq: merchant signature and chain, ids, date, merchant id, brand/BINs."""
    signed = parse_signed(request.p_cert_req)
    verified = open_signed(signed, PCERT_REQ_CT, signer(trust, MERCHANT, at=at))
    data = parse_strict(gateway_admin_pb2.PCertReqData, verified.tbs)
    tags = data.p_cert_rr_tags
    check_id(tags.rrpid, "RRPID")
    check_header_without_transaction(request.header, tags.rrpid)
    check_date(tags.date_unix_ms, now_ms() if now is None else now)
    merchant_id = merchant_id_of(verified.signer)
    if tags.mer_term_ids.merchant_id != merchant_id:
        raise fail(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "MerchantID differs from certificate")
    _check_brand_and_bins(data.brand_and_bins)
    return VerifiedPCertRequest(
        data=data, merchant=verified.signer, merchant_id=merchant_id,
        request_digest=request_digest(GATEWAY_CERTIFICATES_REQUEST_CT, request.p_cert_req),
    )  # fmt: skip


def build_pcert_response(
    credentials: Credentials, request: VerifiedPCertRequest, codes: Sequence[int]
) -> bytes:
    """PCertRes bytes: one PCertCode per brand/BIN; successes name this gateway's certificates.

    The certificates and their chain travel in the bundle of the gateway's credentials.
    """
    check_one_per_item(len(codes), len(request.data.brand_and_bins))
    _, kex_thumb = credentials.require_key_exchange()
    data = gateway_admin_pb2.PCertResTBS(
        content_type=PCERT_RES_CT, p_cert_rr_tags=request.data.p_cert_rr_tags,
        merchant_cert_thumb=request.merchant.thumbprint, request_digest=request.request_digest,
    )  # fmt: skip
    for entry, code in zip(request.data.brand_and_bins, codes, strict=True):
        item = data.items.add(p_cert_code=code, brand_and_bin=entry)
        if code == SUCCESS:
            item.key_exchange_cert_thumb = kex_thumb
            item.signature_cert_thumb = credentials.signature_thumb
    signed = sign(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        PCERT_RES_CT, data.SerializeToString(), credentials.bundle(),
    )  # fmt: skip
    return signed.SerializeToString()


# --- merchant side: PCertRes --------------------------------------------------------


@dataclass(frozen=True)
class GatewayCertificate:
    """The gateway's answer for one brand/BIN, its certificates verified when it succeeded."""

    brand_id: str
    bin: str
    code: int
    key_exchange: VerifiedCertificate | None
    signature: VerifiedCertificate | None
    #: DER of the CA certificates between the key-exchange certificate and the brand root,
    #: for the merchant to send with it in PInitRes.
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class GatewayCertificates:
    """A verified PCertRes: who signed it and the certificates it names, per brand/BIN."""

    data: gateway_admin_pb2.PCertResTBS
    gateway: VerifiedCertificate
    items: tuple[GatewayCertificate, ...]


def _issuers(
    cert: VerifiedCertificate, bundle: crypto_pb2.CertBundle, trust: TrustStore
) -> tuple[bytes, ...]:
    carried = {thumbprint(der): der for der in bundle.certificates}
    chain = []
    for thumb in cert.chain_thumbs[1:-1]:  # neither the leaf nor the pinned root
        der = carried.get(thumb) or trust.certificate(thumb)
        if der is None:
            raise fail(ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, "gateway CA certificate missing")
        chain.append(der)
    return tuple(chain)


def _gateway_certificate(
    item: gateway_admin_pb2.PCertResItem,
    pcert_res: VerifiedSigned[VerifiedCertificate],
    trust: TrustStore,
    at: datetime | None,
) -> GatewayCertificate:
    bundle = pcert_res.signed.bundle
    brand, bin_ = item.brand_and_bin.brand_id, item.brand_and_bin.bin
    if item.p_cert_code != SUCCESS:
        return GatewayCertificate(brand, bin_, item.p_cert_code, None, None, ())
    kex = trust.resolve(
        item.key_exchange_cert_thumb, bundle, PAYMENT_GATEWAY, CertificateUsage.KEY_EXCHANGE, at
    )
    sig = trust.resolve(
        item.signature_cert_thumb, bundle, PAYMENT_GATEWAY, CertificateUsage.SIGNATURE, at
    )
    if kex.brand_id != brand or sig.brand_id != brand:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "gateway certificate of another brand")
    # A gateway vouches for its own certificates only (the merchant seals to kex, trusts sig).
    if not kex.cert.subject == sig.cert.subject == pcert_res.signer.cert.subject:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "certificates of another gateway")
    return GatewayCertificate(brand, bin_, SUCCESS, kex, sig, _issuers(kex, bundle, trust))


def open_pcert_response(
    response: gateway_admin_pb2.GatewayCertificatesResponse,
    credentials: Credentials,
    state: PCertRequestState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> GatewayCertificates:
    """Verify PCertRes: gateway signature and chain, our request, and every certificate named."""
    if response.WhichOneof("result") == "error":
        sent = state.request_digest
        raise open_error(response.error, trust, PAYMENT_GATEWAY, rrpid=state.rrpid, request=sent)
    signed = parse_signed(response.p_cert_res)
    verified = open_signed(signed, PCERT_RES_CT, signer(trust, PAYMENT_GATEWAY, at=at))
    data = parse_strict(gateway_admin_pb2.PCertResTBS, verified.tbs)
    check_header_without_transaction(response.header, data.p_cert_rr_tags.rrpid)
    check_rrpid(state.rrpid, data.p_cert_rr_tags.rrpid)
    check_names_us(credentials, data.merchant_cert_thumb, data.request_digest, state.request_digest)
    answered = tuple((i.brand_and_bin.brand_id, i.brand_and_bin.bin) for i in data.items)
    if answered != state.brand_and_bins:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PCertRes answers other brand/BINs")
    items = tuple(_gateway_certificate(i, verified, trust, at) for i in data.items)
    return GatewayCertificates(data, verified.signer, items)


# --- merchant side: BatchAdminReq ---------------------------------------------------


@dataclass(frozen=True)
class TransactionPage:
    """Which page of a batch's transactions to return."""

    #: 0 for the first page, else the previous answer's ``next_starting_point``.
    starting_point: int
    maximum_items: int


@dataclass(frozen=True)
class BatchAdminState:
    """What the merchant remembers to check the BatchAdminRes against."""

    rrpid: bytes
    request_digest: bytes
    batch_id: str
    maximum_items: int


def build_batch_admin_request(
    credentials: Credentials,
    gateway: Recipient,
    merchant_id: str,
    operation: int,
    *,
    batch_id: str = "",
    return_summary: bool = False,
    page: TransactionPage | None = None,
    rrpid: bytes | None = None,
) -> tuple[gateway_admin_pb2.BatchAdminRequest, BatchAdminState]:
    """BatchAdminReq: a signed batch operation, sealed to the gateway."""
    rrpid = rrpid or new_id()
    data = gateway_admin_pb2.BatchAdminReqData(
        content_type=BATCH_ADMIN_REQ_CT,
        batch_admin_rr_tags=merchant_rr_tags(credentials, merchant_id, rrpid, gateway),
        batch_id=batch_id,
        batch_operation=operation,  # type: ignore[arg-type]
        return_batch_summary_ind=return_summary,
    )
    if page is not None:
        data.return_transaction_detail.starting_point = page.starting_point
        data.return_transaction_detail.maximum_items = page.maximum_items
    sealed = seal_signed(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        BATCH_ADMIN_REQ_CT, data.SerializeToString(), gateway, rrpid=rrpid,
        bundle=credentials.bundle(),
    ).SerializeToString()  # fmt: skip
    request = gateway_admin_pb2.BatchAdminRequest(
        header=header(rrpid=rrpid), batch_admin_req=sealed
    )
    maximum = 0 if page is None else page.maximum_items
    digest = request_digest(BATCH_ADMIN_REQUEST_CT, sealed)
    return request, BatchAdminState(rrpid, digest, batch_id, maximum)


# --- gateway side: BatchAdminReq and BatchAdminRes ----------------------------------


@dataclass(frozen=True)
class VerifiedBatchAdminRequest:
    """A BatchAdminReq whose envelope, merchant and tags have been verified."""

    data: gateway_admin_pb2.BatchAdminReqData
    merchant: VerifiedCertificate
    merchant_id: str
    merchant_kex: Recipient
    request_digest: bytes

    @property
    def rrpid(self) -> bytes:
        """The RRPID of this request: the idempotency key."""
        return self.data.batch_admin_rr_tags.rrpid

    @property
    def maximum_items(self) -> int:
        """How many transaction details the merchant asked for (0: none)."""
        return self.data.return_transaction_detail.maximum_items


def _check_batch_request(data: gateway_admin_pb2.BatchAdminReqData) -> None:
    if data.batch_operation not in _OPERATIONS:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "unknown batch operation")
    check_batch_id(data.batch_id)
    # The gateway names every new batch (unguessable, unique across merchants), and every
    # other operation names its batch. A merchant's own id for a new batch is refused
    # before anything is opened: the answer would name the gateway's id, which the
    # merchant refuses as about another batch, leaving a batch open that it never learnt.
    opening = data.batch_operation == gateway_admin_pb2.BATCH_OPERATION_OPEN
    if opening and data.batch_id:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "a new batch's id is the gateway's")
    if not opening and not data.batch_id:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "batch id missing")
    if data.return_transaction_detail.maximum_items > MAX_TRANSACTION_DETAILS:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"at most {MAX_TRANSACTION_DETAILS} transactions per page",
        )
    if data.return_transaction_detail.starting_point > MAX_STARTING_POINT:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "starting point past any sequence number")


def open_batch_admin_request(
    request: gateway_admin_pb2.BatchAdminRequest,
    credentials: Credentials,
    trust: TrustStore,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> VerifiedBatchAdminRequest:
    """Verify a BatchAdminReq: envelope, merchant signature and chain, RRTags, bounds."""
    t, merchant, sealed, bundle = open_merchant_sealed(
        credentials, trust, request.batch_admin_req, BATCH_ADMIN_REQ_CT, at=at
    )
    data = parse_strict(gateway_admin_pb2.BatchAdminReqData, t)
    tags = data.batch_admin_rr_tags
    check_envelope_xid(sealed, b"")
    merchant_id, kex = check_rr_tags(tags, sealed, merchant, bundle, trust, at=at, now=now)
    check_header_without_transaction(request.header, tags.rrpid)
    _check_batch_request(data)
    return VerifiedBatchAdminRequest(
        data=data, merchant=merchant, merchant_id=merchant_id, merchant_kex=kex,
        request_digest=request_digest(BATCH_ADMIN_REQUEST_CT, request.batch_admin_req),
    )  # fmt: skip


@dataclass(frozen=True)
class BatchAdminDecision:
    """The gateway's answer to a batch operation, as the ledger decided it."""

    status: int
    batch_id: str
    batch_status: gateway_admin_pb2.BatchStatus | None = None
    transaction_details: tuple[gateway_admin_pb2.TransactionDetail, ...] = ()
    next_starting_point: int = 0


def build_batch_admin_response(
    credentials: Credentials, request: VerifiedBatchAdminRequest, decision: BatchAdminDecision
) -> bytes:
    """BatchAdminRes bytes: signed, naming merchant and request, sealed to the merchant."""
    if len(decision.transaction_details) > request.maximum_items:
        raise ValueError("more transaction details than the merchant asked for")
    data = gateway_admin_pb2.BatchAdminResData(
        content_type=BATCH_ADMIN_RES_CT, batch_admin_rr_tags=request.data.batch_admin_rr_tags,
        merchant_cert_thumb=request.merchant.thumbprint, request_digest=request.request_digest,
        batch_id=decision.batch_id,
        status=decision.status,  # type: ignore[arg-type]
        transaction_details=decision.transaction_details,
        next_starting_point=decision.next_starting_point,
    )  # fmt: skip
    if decision.batch_status is not None:
        data.batch_status.CopyFrom(decision.batch_status)
    return seal_to_merchant(
        credentials, BATCH_ADMIN_RES_CT, data.SerializeToString(), request.merchant_kex,
        rrpid=request.rrpid,
    )  # fmt: skip


# --- merchant side: BatchAdminRes ---------------------------------------------------


@dataclass(frozen=True)
class BatchAdminResult:
    """A verified BatchAdminRes: the gateway's signed answer about one batch."""

    data: gateway_admin_pb2.BatchAdminResData
    gateway: VerifiedCertificate

    @property
    def status(self) -> int:
        """The BatchAdminStatus of the answer."""
        return self.data.status


def open_batch_admin_response(
    response: gateway_admin_pb2.BatchAdminResponse,
    credentials: Credentials,
    state: BatchAdminState,
    trust: TrustStore,
    *,
    gateway_identity: GatewayIdentity,
) -> BatchAdminResult:
    """Verify BatchAdminRes: gateway, our RRPID, our name, our request, our batch, our page."""
    if response.WhichOneof("result") == "error":
        ours, sent = gateway_identity, state.request_digest
        raise open_gateway_error(response.error, trust, ours, rrpid=state.rrpid, request=sent)
    t, gateway = open_gateway_sealed(
        credentials, trust, response.batch_admin_res, BATCH_ADMIN_RES_CT, rrpid=state.rrpid,
        gateway_identity=gateway_identity,
    )  # fmt: skip
    data = parse_strict(gateway_admin_pb2.BatchAdminResData, t)
    check_header_without_transaction(response.header, data.batch_admin_rr_tags.rrpid)
    check_rrpid(state.rrpid, data.batch_admin_rr_tags.rrpid)
    check_names_us(credentials, data.merchant_cert_thumb, data.request_digest, state.request_digest)
    if state.batch_id and data.batch_id != state.batch_id:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "BatchAdminRes is about another batch")
    if len(data.transaction_details) > state.maximum_items:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "more transactions than asked for")
    return BatchAdminResult(data, gateway)
