"""CapReq / CapRes test material on a real PKI, shared by the capture tests and by the
tests that reuse a capture exchange (low-s twins, gateway pinning)."""

from __future__ import annotations

from setcore.capture import (
    CaptureDecision,
    CaptureItem,
    CaptureState,
    VerifiedCaptureRequest,
    build_capture_request,
    open_capture_request,
)
from setcore.freshness import new_id
from setpay.v1 import authorization_pb2, capture_pb2

from .certified import Certified, eur, trans_ids

SUCCESS = authorization_pb2.CAP_CODE_SUCCESS


def capture_item(
    c: Certified, amount: int = 1500, *, exp10: int = 2, token_exp10: int = 2, **token_args: object
) -> CaptureItem:
    """One item to capture, with a capture token the gateway sealed for it."""
    ids, auth_rrpid = trans_ids(), new_id()
    token = c.token(ids.xid, auth_rrpid, exp10=token_exp10, **token_args)  # type: ignore[arg-type]
    return CaptureItem(
        trans_ids=ids, auth_rrpid=auth_rrpid, cap_token=token, amount=eur(amount, exp10=exp10)
    )


def capture_request(
    c: Certified, items: list[CaptureItem], **kwargs: object
) -> tuple[capture_pb2.CaptureRequest, CaptureState]:
    """The merchant's CapReq for ``items``, and what it keeps to check the answer."""
    return build_capture_request(
        c.merchant,
        c.gateway_kex,
        items,
        c.merchant_id,
        **kwargs,  # type: ignore[arg-type]
    )


def verified_capture(c: Certified, count: int = 2) -> tuple[VerifiedCaptureRequest, CaptureState]:
    """A CapReq of ``count`` items as the gateway verified it, and the merchant's state."""
    request, state = capture_request(c, [capture_item(c, 1000 + n) for n in range(count)])
    return open_capture_request(request, c.gateway, c.trust(), c.token_key), state


def decisions_for(verified: VerifiedCaptureRequest) -> list[CaptureDecision]:
    """The gateway's decision for each item: captured in full, in one batch."""
    return [
        CaptureDecision(SUCCESS, p.item.cap_payload.cap_req_amt, "batch-7", n + 1)
        for n, p in enumerate(verified.items)
    ]


def capture_response(payload: bytes) -> capture_pb2.CaptureResponse:
    """The CaptureResponse that carries a sealed CapRes."""
    return capture_pb2.CaptureResponse(cap_res=payload)
