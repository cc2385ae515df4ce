"""The AuthRes decision made of the ledger's outcome: an approval, a decline, and nothing
else, refused by an explicit check that ``python -O`` keeps (as ``gateway.settlement``
refuses an unexpected outcome)."""

from __future__ import annotations

import pytest

from gateway.authorize import decision_for
from gateway.ledger import AuthorizationReversed, Decline, Declined
from setcore.authorization import open_auth_request
from setpay.v1 import authorization_pb2

from .actors import Merchant, World, auth_request, purchase, register_cardholder


def test_an_outcome_neither_approval_nor_decline_is_refused(
    ec_world: World, ec_merchant: Merchant
) -> None:
    bank = ec_world.running.bank
    bought = purchase(ec_merchant, register_cardholder(ec_world), 1200)
    request, _ = auth_request(ec_merchant, bought)
    verified = open_auth_request(
        request, bank.opening_credentials(), bank.trust, at=bank.as_of_time, now=bank.as_of_ms
    )
    declined = decision_for(bank, verified, Declined(Decline.INSUFFICIENT_FUNDS))
    assert declined.auth_code != authorization_pb2.AUTH_CODE_APPROVED
    assert declined.auth_amt.amount == 0
    reversed_ = AuthorizationReversed("hold", 0, 1200, 978)
    with pytest.raises(TypeError, match="unexpected outcome AuthorizationReversed"):
        decision_for(bank, verified, reversed_)
