"""A serving merchant's gateway certificates are judged by its own trust store.

``GatewayKeys`` fetches the gateway's certificates again once the trust store refuses
the ones held (``test_gateway_keys_revoked``); without the store handed in it judges by
age alone, and a revoked key-exchange certificate stays handed out for its hour.
"""

from __future__ import annotations

from clients.merchant.config import AnswerMode
from tests.clients.conftest import MerchantFactory


def test_the_merchant_hands_its_trust_store_to_its_gateway_keys(
    make_merchant: MerchantFactory,
) -> None:
    merchant = make_merchant("m-keys-wired", AnswerMode.ORDER_RECEIVED)
    assert merchant.gateway_keys._trust is merchant.trust
