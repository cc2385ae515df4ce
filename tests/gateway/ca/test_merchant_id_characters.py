"""A merchant's or gateway's names hold no control, separator or bidirectional character.

The CA checked their lengths only: anyone may register over the CA port, and a merchant
ID with a newline forged lines in ``setpay ca list``, the listing an operator reads to
pick what to revoke (a right-to-left override turned one around on screen). Such a name
is refused DECODING_FAILURE at Me-AqCInit; names stored before are escaped by the listing
(``tests/cli/test_ca_list_escapes.py``).

The rule first refused every format character (Unicode Cf), which real names need: a
zero-width non-joiner in Persian, a zero-width joiner in Indic conjuncts and emoji
sequences, a soft hyphen. Such a name was refused at registration, and a merchant
registered under one before could not renew. Of Cf only the bidirectional controls are
refused now (``setcore.names``).
"""

from __future__ import annotations

import os

import pytest

from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.names import BIDI_CONTROLS
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
from .flows import (
    MER_INITIAL,
    MER_RENEWAL,
    PGWY_INITIAL,
    REQUESTERS,
    new_trust,
    register_merchant,
    start_merchant,
)

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


# Names real merchants have, each holding a format character the CA must take.
NAMES_WITH_JOINERS = {
    "persian-zwnj": "\u0645\u06cc\u200c\u062e\u0627\u0646\u0647",  # ZWNJ inside a word
    "hindi-zwj": "\u0915\u094d\u200d\u0937 Stores",  # a conjunct kept half-formed by ZWJ
    "emoji-zwj": "Family \U0001f468\u200d\U0001f469\u200d\U0001f467 Shop",
    "soft-hyphen": "Donau\u00addampf\u00adschiff GmbH",
}


@pytest.mark.parametrize("key", sorted(NAMES_WITH_JOINERS))
def test_a_name_with_joiners_registers_and_renews(ec_bank: Bank, key: str) -> None:
    identity = MerchantIdentity(f"m-joiner-{key}", NAMES_WITH_JOINERS[key])
    first, state, _ = register_merchant(ec_bank, identity)
    assert first.complete and first.signature is not None
    assert first.signature.merchant_data is not None
    assert first.signature.merchant_data.merchant_name == identity.merchant_name
    old = first.credentials(REQUESTERS, state)
    session = start_merchant(ec_bank, identity, request_type=MER_RENEWAL)
    renewed, *_ = register_merchant(ec_bank, identity, session=session, renewing=old)
    assert renewed.complete and renewed.signature is not None


# One of each class the rule refuses: every bidirectional control, a control, a line and
# a paragraph separator.
REFUSED = [*sorted(BIDI_CONTROLS), "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("ch", REFUSED, ids=lambda ch: f"U+{ord(ch):04X}")
def test_each_refused_character_is_refused_in_a_name(ch: str) -> None:
    identity = MerchantIdentity("m-refused", f"Corner{ch}Shop")
    with pytest.raises(ProtocolError) as caught:
        identity_of(id_data_of(identity), request_kind(MER_INITIAL))
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
