"""Merchant and gateway registration, the Merchant CA's side (SET-PROTOCOL.md 4.2).

The CA checks and opens what the requester sends (Me-AqCInitReq, CertReq) and builds its
signed answers. The message flow and the requester's side are in
``setcore.registration_merchant``; deciding is the CA's (``gateway.ca``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from setcore.credentials import Credentials
from setcore.encoding import parse_strict
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_id, check_lid
from setcore.language import check_language
from setcore.pki.truststore import TrustStore
from setcore.purchase import check_header_without_transaction
from setcore.registration import (
    FormTemplate,
    RequestKind,
    RevocationData,
    ca_bundle,
    check_thumbs,
)
from setcore.registration_certreq import (
    CertAnswer,
    CertRequestEnvelope,
    OpenedCertRequest,
    ProvenKeys,
    open_cert_request,
    sign_cert_result,
    verify_cert_request,
)
from setcore.registration_merchant import (
    ACCT_DATA_CT,
    MAX_ACCOUNT_CHARS,
    ME_AQ_C_INIT_RES_CT,
    Identity,
    identity_of,
    require_merchant_kind,
)
from setcore.signed import sign
from setpay.v1 import registration_pb2

# Brand ids are short names (setcore.pki.extensions bounds them the same way).
MAX_BRAND_ID_CHARS = 64


def check_me_aq_c_init_request(
    request: registration_pb2.MeAqCInitRequest,
) -> tuple[RequestKind, Identity]:
    """Refuse a malformed Me-AqCInitReq; the request kind and identity it names."""
    check_id(request.rrpid, "RRPID")
    check_id(request.chall_ee, "Chall-EE")
    check_lid(request.lid_ee, "LID-EE")
    check_thumbs(request.thumbs)
    check_header_without_transaction(request.header, request.rrpid)
    if not 0 < len(request.brand_id) <= MAX_BRAND_ID_CHARS:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "Me-AqCInitReq needs a brand")
    check_language(request.language, "Me-AqCInitReq")
    kind = require_merchant_kind(request.request_type)
    return kind, identity_of(request.id_data, kind)


def build_me_aq_c_init_response(
    ca: Credentials,
    request: registration_pb2.MeAqCInitRequest,
    lid_ca: bytes,
    chall_ca: bytes,
    form: FormTemplate,
    *,
    revocation: RevocationData | None,
) -> bytes:
    """Signed(MeAqCInitResTBS): Chall-CA, the form, the CA key-exchange certificate."""
    _, kex_thumb = ca.require_key_exchange()
    tbs = registration_pb2.MeAqCInitResTBS(
        content_type=ME_AQ_C_INIT_RES_CT, rrpid=request.rrpid, lid_ee=request.lid_ee,
        chall_ee=request.chall_ee, lid_ca=lid_ca, chall_ca=chall_ca, cae_thumb=kex_thumb,
        request_type=request.request_type, reg_form=form.to_proto(), thumbs=request.thumbs,
    ).SerializeToString()  # fmt: skip
    bundle = ca_bundle(ca, revocation=revocation, held=request.thumbs.thumbs)
    signed = sign(
        ca.backend, ca.signature_key, ca.signature_thumb, ME_AQ_C_INIT_RES_CT, tbs, bundle
    )
    return signed.SerializeToString()


def open_merchant_cert_request(
    envelope: CertRequestEnvelope,
    ca: Credentials,
    *,
    now: int | None = None,
    judge_date: bool = True,
) -> OpenedCertRequest:
    """Decrypt a merchant or gateway CertReq (AcctData extra part optional).

    ``now`` (Unix ms) is the CA's clock for RequestDate, which ``judge_date`` False leaves
    unjudged (bytes the CA recorded when it judged them, ``gateway.ca.merchant``).
    """
    opened = open_cert_request(
        envelope, ca, frozenset({None, ACCT_DATA_CT}), now=now, judge_date=judge_date
    )
    require_merchant_kind(opened.data.request_type)
    return opened


@dataclass(frozen=True)
class MerchantRequest:
    """A merchant or gateway CertReq whose signatures verified."""

    opened: OpenedCertRequest
    keys: ProvenKeys
    identity: Identity
    account: str | None
    """AcctData's AcctIdentification, if the request carried AcctData: the settlement
    account the requester names, for the acquirer to compare with the one it holds."""

    @property
    def data(self) -> registration_pb2.CertReqData:
        """The verified CertReqData."""
        return self.opened.data


def verify_merchant_cert_request(
    opened: OpenedCertRequest, trust: TrustStore, *, at: datetime | None = None
) -> MerchantRequest:
    """Verify the signatures and keys (``refusal_status`` on failure), then the identity."""
    keys = verify_cert_request(opened, trust, at=at)
    identity = identity_of(opened.data.id_data, keys.kind)
    account = None
    if opened.extra is not None:
        acct_data = parse_strict(registration_pb2.AcctData, opened.extra)
        check_id(acct_data.ex_nonce, "EXNonce")
        account = acct_data.acct_identification
        if not 0 < len(account) <= MAX_ACCOUNT_CHARS:
            raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "account identification")
    return MerchantRequest(opened, keys, identity, account)


def build_merchant_cert_response(
    ca: Credentials,
    answer: CertAnswer,
    status: int,
    *,
    revocation: RevocationData | None,
    certificates: Sequence[bytes] = (),
    ee_message: str = "",
) -> bytes:
    """S(CA, CertResData): signed only; the signature and key-exchange certificates in
    that order in CertThumbs and the bundle."""
    signed = sign_cert_result(
        ca, answer, status, revocation=revocation, certificates=certificates,
        ee_message=ee_message,
    )  # fmt: skip
    return signed.SerializeToString()


def decryption_error_answer(rrpid: bytes) -> CertAnswer:
    """Whom a DECRYPTION_ERROR CertRes answers: only the RRPID could be read."""
    return CertAnswer(rrpid=rrpid, lid_ee=b"", chall_ee3=b"", lid_ca=b"")


__all__ = [
    "MerchantRequest",
    "build_me_aq_c_init_response",
    "build_merchant_cert_response",
    "check_me_aq_c_init_request",
    "decryption_error_answer",
    "open_merchant_cert_request",
    "verify_merchant_cert_request",
]
