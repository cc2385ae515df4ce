"""A gateway answer whose signed data names another transaction than the one the merchant
asked about is refused by the merchant for that (SET-PROTOCOL.md 6.5, 9.3.2), even sealed
for the right XID and naming the merchant and its request: the merchant would otherwise
file the reversal's new amount and capture token under the transaction it asked about.

The envelope's XID, which the AEAD binds, is the one asked about; only the signed
TransIDs differ (``_sealed_for``): the one check that looks at them must refuse."""

from __future__ import annotations

import dataclasses

import pytest

from setcore import auth_reversal
from setcore.auth_reversal import (
    AuthRevDecision,
    build_auth_reversal_request,
    build_auth_reversal_response,
    open_auth_reversal_request,
    open_auth_reversal_response,
    reissue_cap_token,
)
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setpay.v1 import authorization_pb2

from .certified import Certified, eur, trans_ids
from .pinning_support import gateway_of
from .refusals import refused


def _sealed_for(monkeypatch: pytest.MonkeyPatch, xid: bytes) -> None:
    """Every envelope ``auth_reversal`` seals from now on is bound to ``xid``."""
    sealing = getattr(auth_reversal, "seal_with_baggage")  # noqa: B009 - not exported

    def seal(*args, **kwargs):  # type: ignore[no-untyped-def]
        return sealing(*args, **{**kwargs, "xid": xid})

    monkeypatch.setattr(auth_reversal, "seal_with_baggage", seal)


def test_an_auth_rev_res_for_another_transaction_is_refused(
    ec_certified: Certified, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = ec_certified
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
    other.trans_ids.xid = new_id()
    _sealed_for(monkeypatch, ids.xid)
    payload = build_auth_reversal_response(
        c.gateway, dataclasses.replace(verified, data=other), decision
    )
    reason = refused(
        ErrorCode.ERROR_CODE_UNKNOWN_XID,
        open_auth_reversal_response,
        authorization_pb2.AuthReversalResponse(auth_rev_res=payload),
        c.merchant,
        state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )
    assert reason == "AuthRevRes is for another transaction"
