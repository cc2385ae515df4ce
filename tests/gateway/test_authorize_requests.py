"""AuthReqs asking for what the gateway cannot do, through the real gateway: an amount
beyond what the ledger holds is a signed decline, as one beyond PurchAmt is; settlement
data (SaleDetail) the gateway would not act on is refused, never quietly ignored.

Each checks the answer and that nothing was held; where the refusal comes before the
issuer's decision, that the payment instruction is still good for one."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ledger.limits import MAX_AMOUNT
from setcore import authorization
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import crypto_pb2
from setpay.v1 import gateway_admin_pb2 as g

from .actors import (
    Merchant,
    Purchase,
    World,
    auth_request,
    purchase,
    register_cardholder,
    register_merchant,
)
from .actors import authorize as authorized
from .test_authorize_checks import _decision, _names, _pending, _refused
from .test_settlement import _authorized, capture
from .test_settlement_figures import _batch


def test_an_amount_above_the_ledgers_largest_is_declined_as_an_amount_error(
    ec_world: World, ec_merchant: Merchant
) -> None:
    # The cardholder signed it and the merchant asks exactly it: a well-formed request
    # the issuer cannot grant, answered as one above PurchAmt is, not with a SET Error.
    cardholder = register_cardholder(ec_world, limit=MAX_AMOUNT)
    bought = purchase(ec_merchant, cardholder, MAX_AMOUNT + 1)
    request, state = auth_request(ec_merchant, bought)

    payload = _decision(ec_world, ec_merchant, request, state)

    assert _names(payload) == ("AUTH_CODE_AMOUNT_ERROR", "RESP_REASON_AMOUNT_MISMATCH")
    assert payload.auth_header.auth_amt.amount == 0
    assert _pending(ec_world, cardholder) == 0
    # The largest amount itself is the issuer's to decide, and the card has it.
    largest = purchase(ec_merchant, cardholder, MAX_AMOUNT)
    assert authorized(ec_world, ec_merchant, largest).auth_code == a.AUTH_CODE_APPROVED


def _naming(
    merchant: Merchant,
    bought: Purchase,
    detail: a.SaleDetail,
    monkeypatch: pytest.MonkeyPatch,
    *,
    capture_now: bool,
) -> tuple[a.AuthorizeRequest, authorization.AuthRequestState]:
    """The merchant's AuthReq for ``bought`` with ``detail`` in what it signs."""
    real = authorization.seal_with_baggage

    def with_detail(backend: Any, key: Any, thumb: Any, ct: str, data: bytes, *rest: Any,
                    **kwargs: Any) -> crypto_pb2.SealedWithBaggage:  # fmt: skip
        changed = a.AuthReqData.FromString(data)
        changed.sale_detail.CopyFrom(detail)
        return real(backend, key, thumb, ct, changed.SerializeToString(), *rest, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(authorization, "seal_with_baggage", with_detail)
        return auth_request(merchant, bought, capture_now=capture_now)


@pytest.mark.parametrize("capture_now", [True, False], ids=["sale", "authorization"])
def test_an_auth_request_naming_a_batch_is_refused_as_not_supported(
    ec_world: World, monkeypatch: pytest.MonkeyPatch, capture_now: bool
) -> None:
    # A closed batch: the gateway used to file the sale in the open batch instead and
    # answer SUCCESS, the batch the merchant signed for left unread.
    merchant, closed = _merchant_with_a_closed_batch(ec_world, f"M-ec-sale-{capture_now}")
    cardholder = register_cardholder(ec_world)
    bought = purchase(merchant, cardholder, 300)
    detail = a.SaleDetail(batch_id=closed)
    request, state = _naming(merchant, bought, detail, monkeypatch, capture_now=capture_now)

    assert _refused(ec_world, merchant, request, state) == "ERROR_CODE_MESSAGE_NOT_SUPPORTED"

    assert _pending(ec_world, cardholder) == 0
    account = ec_world.running.ledger.card_account(cardholder.account_id)
    assert account.posted_debt == 0
    # Refused before the issuer decided: the PI is still good, without the SaleDetail.
    request, state = auth_request(merchant, bought, capture_now=capture_now)
    assert _names(_decision(ec_world, merchant, request, state))[0] == "AUTH_CODE_APPROVED"


def _merchant_with_a_closed_batch(world: World, merchant_id: str) -> tuple[Merchant, str]:
    """A merchant whose only batch, with one capture in it, is closed; and that batch."""
    merchant = register_merchant(world, merchant_id)
    batch_id: str = capture(world, merchant, _authorized(world, merchant, 100), 100)[3]
    closed = _batch(world, merchant, g.BATCH_OPERATION_CLOSE, batch_id=batch_id)
    assert closed.data.status == g.BATCH_ADMIN_STATUS_SUCCESS
    assert closed.data.batch_status.closed
    return merchant, batch_id
