"""Ids a gateway message is bound to, checked where nothing else checks them first.

* The RRPID a gateway answer signs (its RR tags) must be the one the merchant sent. The
  answers' "another RRPID" tests change the RRPID the envelope is bound to, which the
  envelope refuses before anything is read: here the envelope is sealed for the RRPID
  sent (``_bound_to``) and names the request's bytes (``request_digest``); only the
  signed echo differs, so only ``check_rrpid`` can refuse.
* A merchant request naming no transaction of its own (CapReq, CapRev/Cred, BatchAdmin)
  must come in an envelope bound to no XID: one sealed to an XID is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import ModuleType

import pytest

from setcore import auth_reversal, authorization, cap_rev_or_cred, capture, gateway_admin
from setcore.auth_reversal import (
    AuthRevDecision,
    build_auth_reversal_request,
    build_auth_reversal_response,
    open_auth_reversal_request,
    open_auth_reversal_response,
    reissue_cap_token,
)
from setcore.authorization import VerifiedAuthRequest
from setcore.cap_rev_or_cred import (
    CREDIT,
    CapRevOrCredDecision,
    build_cap_rev_or_cred_response,
    open_credit_request,
)
from setcore.capture import build_capture_response, open_capture_request
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.gateway_admin import (
    build_batch_admin_response,
    build_pcert_request,
    build_pcert_response,
    open_batch_admin_request,
    open_pcert_request,
    open_pcert_response,
)
from setpay.v1 import authorization_pb2, capture_pb2, gateway_admin_pb2

from .capture_support import capture_item, capture_request, capture_response, decisions_for
from .certified import Certified, eur, trans_ids
from .pinning_support import gateway_of
from .refusals import refused
from .test_authorization import _answered, _open_res
from .test_cap_rev_or_cred import _item, _respond
from .test_gateway_admin_batch import _batch, _batch_response, _decision

# An opening of the forged answer: called, it must refuse.
Opening = Callable[[], object]


def _bound_to(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, sealer: str, **ids: bytes
) -> None:
    """Every envelope ``module`` seals through ``sealer`` from now on is bound to ``ids``
    (``xid``, ``rrpid``), whatever its caller names."""
    sealing = getattr(module, sealer)

    def seal(*args, **kwargs):  # type: ignore[no-untyped-def]
        return sealing(*args, **{**kwargs, **ids})

    monkeypatch.setattr(module, sealer, seal)


# --- the signed RRPID echo of the six gateway answers -----------------------------------


def _auth_res(c: Certified, monkeypatch: pytest.MonkeyPatch) -> Opening:
    def forge(verified: VerifiedAuthRequest) -> VerifiedAuthRequest:
        _bound_to(monkeypatch, authorization, "seal_with_baggage", rrpid=verified.rrpid)
        other = authorization_pb2.AuthReqData()
        other.CopyFrom(verified.data)
        other.auth_tags.auth_rr_tags.rrpid = new_id()
        return dataclasses.replace(verified, data=other)

    payload, state = _answered(c, forge)
    return lambda: _open_res(c, payload, state)


def _auth_rev_res(c: Certified, monkeypatch: pytest.MonkeyPatch) -> Opening:
    ids, auth_rrpid = trans_ids(), new_id()
    request, state = build_auth_reversal_request(
        c.merchant, c.gateway_kex, ids, auth_rrpid, c.token(ids.xid, auth_rrpid), eur(500),
        c.merchant_id,
    )  # fmt: skip
    verified = open_auth_reversal_request(request, c.gateway, c.trust(), c.token_key)
    decision = AuthRevDecision(
        authorization_pb2.AUTH_REV_CODE_APPROVED, verified.data.auth_new_amt,
        reissue_cap_token(c.token_key, verified),
    )  # fmt: skip
    other = authorization_pb2.AuthRevReqData()
    other.CopyFrom(verified.data)
    other.auth_rev_rr_tags.rrpid = new_id()
    _bound_to(monkeypatch, auth_reversal, "seal_with_baggage", rrpid=verified.rrpid)
    payload = build_auth_reversal_response(
        c.gateway, dataclasses.replace(verified, data=other), decision
    )
    response = authorization_pb2.AuthReversalResponse(auth_rev_res=payload)
    return lambda: open_auth_reversal_response(
        response, c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )


def _cap_res(c: Certified, monkeypatch: pytest.MonkeyPatch) -> Opening:
    request, state = capture_request(c, [capture_item(c)])
    verified = open_capture_request(request, c.gateway, c.trust(), c.token_key)
    other = capture_pb2.CapReqData()
    other.CopyFrom(verified.data)
    other.cap_rr_tags.rrpid = new_id()
    _bound_to(monkeypatch, capture, "seal_to_merchant", rrpid=verified.rrpid)
    payload = build_capture_response(
        c.gateway, dataclasses.replace(verified, data=other), decisions_for(verified)
    )
    return lambda: capture.open_capture_response(
        capture_response(payload), c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )


def _cred_res(c: Certified, monkeypatch: pytest.MonkeyPatch) -> Opening:
    # One opener serves CapRevRes, CredRes and CredRevRes alike: a credit stands for them.
    request, state = cap_rev_or_cred.build_credit_request(
        c.merchant, c.gateway_kex, [_item(c, CREDIT)], c.merchant_id
    )
    verified = open_credit_request(request, c.gateway, c.trust(), c.token_key)
    other = capture_pb2.CapRevOrCredReqData()
    other.CopyFrom(verified.data)
    other.rr_tags.rrpid = new_id()
    _bound_to(monkeypatch, cap_rev_or_cred, "seal_to_merchant", rrpid=verified.rrpid)
    decisions = [
        CapRevOrCredDecision(capture_pb2.CAP_REV_OR_CRED_CODE_SUCCESS, p.item.amount, "batch-9")
        for p in verified.items
    ]
    payload = build_cap_rev_or_cred_response(
        c.gateway, dataclasses.replace(verified, data=other), decisions
    )
    return lambda: _respond(CREDIT, payload, c, state)


def _pcert_res(c: Certified, monkeypatch: pytest.MonkeyPatch) -> Opening:
    # Signed, not sealed: no envelope binds an RRPID; the signed echo is the only one.
    request, state = build_pcert_request(c.merchant, [(c.brand_id, "411111")], c.merchant_id)
    verified = open_pcert_request(request, c.trust())
    other = gateway_admin_pb2.PCertReqData()
    other.CopyFrom(verified.data)
    other.p_cert_rr_tags.rrpid = new_id()
    payload = build_pcert_response(
        c.gateway,
        dataclasses.replace(verified, data=other),
        [gateway_admin_pb2.P_CERT_CODE_SUCCESS],
    )
    response = gateway_admin_pb2.GatewayCertificatesResponse(p_cert_res=payload)
    return lambda: open_pcert_response(response, c.merchant, state, c.trust())


def _batch_admin_res(c: Certified, monkeypatch: pytest.MonkeyPatch) -> Opening:
    request, state = _batch(c)
    verified = open_batch_admin_request(request, c.gateway, c.trust())
    other = gateway_admin_pb2.BatchAdminReqData()
    other.CopyFrom(verified.data)
    other.batch_admin_rr_tags.rrpid = new_id()
    _bound_to(monkeypatch, gateway_admin, "seal_to_merchant", rrpid=verified.rrpid)
    payload = build_batch_admin_response(
        c.gateway, dataclasses.replace(verified, data=other), _decision(details=0)
    )
    return lambda: gateway_admin.open_batch_admin_response(
        _batch_response(payload), c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )


ANSWERS = {
    "AuthRes": _auth_res,
    "AuthRevRes": _auth_rev_res,
    "CapRes": _cap_res,
    "CredRes": _cred_res,
    "PCertRes": _pcert_res,
    "BatchAdminRes": _batch_admin_res,
}


@pytest.mark.parametrize("answer", list(ANSWERS), ids=list(ANSWERS))
def test_an_answer_signing_another_rrpid_is_refused(
    ec_certified: Certified, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    opening = ANSWERS[answer](ec_certified, monkeypatch)
    reason = refused(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, opening)
    assert reason == "response answers another request"


# --- merchant requests of no transaction: an envelope bound to an XID -------------------


def _cap_req(c: Certified) -> Opening:
    request, _ = capture_request(c, [capture_item(c)])
    return lambda: open_capture_request(request, c.gateway, c.trust(), c.token_key)


def _cred_req(c: Certified) -> Opening:
    request, _ = cap_rev_or_cred.build_credit_request(
        c.merchant, c.gateway_kex, [_item(c, CREDIT)], c.merchant_id
    )
    return lambda: open_credit_request(request, c.gateway, c.trust(), c.token_key)


def _batch_admin_req(c: Certified) -> Opening:
    request, _ = _batch(c)
    return lambda: open_batch_admin_request(request, c.gateway, c.trust())


REQUESTS: dict[str, tuple[Callable[[Certified], Opening], ModuleType, str]] = {
    "CapReq": (_cap_req, capture, "seal_with_baggage"),
    "CredReq": (_cred_req, cap_rev_or_cred, "seal_with_baggage"),
    "BatchAdminReq": (_batch_admin_req, gateway_admin, "seal_signed"),
}


@pytest.mark.parametrize("name", list(REQUESTS), ids=list(REQUESTS))
def test_a_request_of_no_transaction_sealed_to_an_xid_is_refused(
    ec_certified: Certified, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    build, module, sealer = REQUESTS[name]
    _bound_to(monkeypatch, module, sealer, xid=new_id())
    opening = build(ec_certified)
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, opening)
    assert reason == "envelope XID differs"
