"""A merchant's or gateway's names hold no control or format character.

The CA checked their lengths only: anyone may register over the CA port, and a merchant
ID with a newline forged lines in ``setpay ca list``, the listing an operator reads to
pick what to revoke (a right-to-left override turned one around on screen). Such a name
is refused DECODING_FAILURE at Me-AqCInit; names stored before are escaped by the listing
(``tests/cli/test_ca_list_escapes.py``).
"""

from __future__ import annotations

import os

import pytest

from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.registration import request_kind
from setcore.registration_merchant import (
    GatewayIdentity,
    MerchantIdentity,
    build_me_aq_c_init_request,
    id_data_of,
    identity_of,
    open_me_aq_c_init_response,
)

from .conftest import Bank
from .flows import MER_INITIAL, PGWY_INITIAL, new_trust

FORGED_LINE = "m-x\n00:11:22  01  merchant  signature  2031-01-01  live  m-acme"


@pytest.mark.parametrize(
    "identity",
    [
        MerchantIdentity(FORGED_LINE, "Corner Shop Ltd"),
        MerchantIdentity("m-\u202eevil", "Corner Shop Ltd"),  # a right-to-left override
        MerchantIdentity("m-tab", "Corner\tShop"),
        MerchantIdentity("m-sep", "Corner\u2028Shop"),  # a line separator
        MerchantIdentity("m-bin", "Corner Shop Ltd", "4000\x0000"),
    ],
)
def test_a_merchant_name_with_a_control_character_is_refused(
    ec_bank: Bank, identity: MerchantIdentity
) -> None:
    request, state = build_me_aq_c_init_request(
        MER_INITIAL, identity, ec_bank.brand_id, os.urandom(8)
    )
    with pytest.raises(PeerError) as caught:
        open_me_aq_c_init_response(ec_bank.stub.MeAqCInit(request), state, new_trust(ec_bank))
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


@pytest.mark.parametrize(
    "identity", [GatewayIdentity("400000", "Acquirer\nLtd"), GatewayIdentity("40\r0000", "Acq")]
)
def test_a_gateway_name_with_a_control_character_is_refused(identity: GatewayIdentity) -> None:
    with pytest.raises(ProtocolError) as caught:
        identity_of(id_data_of(identity), request_kind(PGWY_INITIAL))
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


def test_names_of_any_script_are_taken() -> None:
    identity = MerchantIdentity("m-caf\u00e9-\u5c71\u7530", "Caf\u00e9 \u5c71\u7530 Ltd")
    assert identity_of(id_data_of(identity), request_kind(MER_INITIAL)) == identity
