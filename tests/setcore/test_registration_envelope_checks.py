"""Registration checks that a later one with the same code used to hide, each pinned by
its reason (SET-PROTOCOL.md 4.1, 4.2, 4.3):

* a CertReq whose extra part is one this CA does not take (a cardholder's carrying a
  merchant's AcctData, a merchant's carrying PANData0), refused before it is opened;
* a cardholder CertRes whose back-key envelope (EncK) has a nonce of another length, or
  is of another content type or AEAD algorithm (neither is in its associated data);
* a RegFormRes or Me-AqCInitRes whose form asks for more fields than a requester prints.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from hsm.base import KeyUsage
from setcore import registration_cardholder, registration_merchant
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pan import PAN, blinded_account, pan_secret
from setcore.pki import issue_cardholder
from setcore.pki.issuance import card_expiry_end
from setcore.pki.truststore import TrustStore
from setcore.registration import MAX_FORM_FIELDS, REQUEST_COMPLETE, FormTemplate
from setcore.registration_cardholder import (
    PAN_DATA0_CT,
    build_card_cert_request,
    build_reg_form_request,
    open_card_cert_response,
    open_reg_form_response,
)
from setcore.registration_cardholder_ca import (
    build_card_cert_response,
    build_reg_form_response,
    open_card_cert_request,
    open_reg_form_request,
    verify_card_cert_request,
)
from setcore.registration_certreq import CertAnswer, peek_cert_request
from setcore.registration_merchant import (
    ACCT_DATA_CT,
    MerchantIdentity,
    build_me_aq_c_init_request,
    build_merchant_cert_request,
    open_me_aq_c_init_response,
)
from setcore.registration_merchant_ca import (
    build_me_aq_c_init_response,
    open_merchant_cert_request,
)
from setpay.v1 import crypto_pb2

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World
from .refusals import refused
from .registration_support import (
    FORM,
    S,
    _ca,
    _contact,
    _form,
    _key,
    _revocation,
    registration_world,
)

DECODING_FAILURE = ErrorCode.ERROR_CODE_DECODING_FAILURE
DECRYPTION_FAILURE = ErrorCode.ERROR_CODE_DECRYPTION_FAILURE
ACCT_DATA = (
    ACCT_DATA_CT,
    S.AcctData(content_type=ACCT_DATA_CT, acct_identification="acct-1").SerializeToString(),
)
PAN_DATA0 = (PAN_DATA0_CT, S.PANData0(content_type=PAN_DATA0_CT).SerializeToString())


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


def _sealing_with(module: ModuleType, extra: tuple[str, bytes]) -> Callable[..., Any]:
    """``module``'s ``seal_cert_request``, sealing ``extra`` as the extra part instead."""
    real = module.seal_cert_request

    def sealing(*args: Any, **kwargs: Any) -> Any:
        return real(*args, **{**kwargs, "extra": extra})

    return sealing


# --- a CertReq's extra part ------------------------------------------------------------


def test_a_cardholder_cert_req_carrying_acct_data_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, reg, form = _form(world)
    monkeypatch.setattr(
        registration_cardholder,
        "seal_cert_request",
        _sealing_with(registration_cardholder, ACCT_DATA),
    )
    request, _ = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    envelope = peek_cert_request(request)
    assert envelope.sealed.extra_content_type == ACCT_DATA_CT
    reason = refused(DECODING_FAILURE, open_card_cert_request, envelope, _ca(world))
    assert reason == "unexpected extra part"


def test_a_merchant_cert_req_carrying_pan_data0_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust = TrustStore(world.root.der)
    request, state = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, MerchantIdentity("m-0001", "Corner Shop"), "testbrand",
        b"lid-m",
    )  # fmt: skip
    mca = _ca(world, "merchant")
    body = build_me_aq_c_init_response(
        mca, request, b"lid-ca", new_id(), FORM, revocation=_revocation(world)
    )
    registration = open_me_aq_c_init_response(
        S.MeAqCInitResponse(me_aq_c_init_res=body), state, trust
    )
    monkeypatch.setattr(
        registration_merchant, "seal_cert_request", _sealing_with(registration_merchant, PAN_DATA0)
    )
    cert_request, _ = build_merchant_cert_request(
        world.backend, _key(world), _key(world, KeyUsage.KEY_EXCHANGE), registration, state
    )
    reason = refused(
        DECODING_FAILURE, open_merchant_cert_request, peek_cert_request(cert_request), mca
    )
    assert reason == "unexpected extra part"


# --- the cardholder CertRes's back-key envelope ----------------------------------------


def _cert_res(world: World) -> tuple[bytes, Any, TrustStore]:
    """A CCA's CertRes (its KeySealed bytes) issuing the wallet's certificate, the wallet's
    state and trust store: it opens as it is."""
    trust, reg, form = _form(world)
    key = _key(world)
    request, state = build_card_cert_request(
        world.backend, key, form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    proven = verify_card_cert_request(opened, trust)
    data = opened.data
    nonce = new_id()
    certificate = issue_cardholder(
        world.brand.cardholder_ca.ca, key.public_key,
        blinded_account(pan_secret(proven.card_secret, nonce), PAN(TEST_PAN), TEST_EXPIRY),
        card_expiry_end(TEST_EXPIRY),
    )  # fmt: skip
    body = build_card_cert_response(
        _ca(world), data.back_key, CertAnswer(data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca),
        REQUEST_COMPLETE, revocation=_revocation(world), certificate=certificate, nonce_cca=nonce,
    )  # fmt: skip
    assert open_card_cert_response(S.CertResponse(cert_res=body), state, trust).complete
    return body, state, trust


def _altered(body: bytes, **fields: Any) -> S.CertResponse:
    """The CertRes ``body`` with ``fields`` of its KeySealed set (nothing else touched)."""
    sealed = crypto_pb2.KeySealed.FromString(body)
    for name, value in fields.items():
        setattr(sealed, name, value)
    return S.CertResponse(cert_res=sealed.SerializeToString())


@pytest.mark.parametrize("nonce_bytes", [0, 11, 13, 16])
def test_a_cert_res_whose_back_key_nonce_is_of_another_length_is_refused(
    world: World, nonce_bytes: int
) -> None:
    body, state, trust = _cert_res(world)
    answer = _altered(body, nonce=bytes(nonce_bytes))
    reason = refused(DECRYPTION_FAILURE, open_card_cert_response, answer, state, trust)
    assert reason == "bad nonce length"


@pytest.mark.parametrize(
    "fields",
    [{"content_type": "setpay.v1.RegFormResTBS"}, {"content_type": ""},
     {"aead_alg": "aes-128-gcm"}, {"aead_alg": ""}],
    ids=["content-type", "no-content-type", "aead", "no-aead"],
)  # fmt: skip
def test_a_cert_res_whose_back_key_envelope_is_of_another_kind_is_refused(
    world: World, fields: dict[str, str]
) -> None:
    # Neither field is in the envelope's associated data: the tag would not catch them.
    body, state, trust = _cert_res(world)
    answer = _altered(body, **fields)
    reason = refused(DECODING_FAILURE, open_card_cert_response, answer, state, trust)
    assert reason == "unexpected back-key envelope"


# --- the form a requester prints ---------------------------------------------------------


def _fields(count: int) -> FormTemplate:
    """A form asking for ``count`` fields, each name well within its bound."""
    return FormTemplate("form-1", tuple(f"field {n}" for n in range(count)), "policy")


def test_a_reg_form_res_asking_for_too_many_fields_is_refused(world: World) -> None:
    def answered(form: FormTemplate) -> Any:
        trust, contact = _contact(world)
        request, reg = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee")
        view = open_reg_form_request(request, _ca(world))
        body = build_reg_form_response(
            _ca(world), view.tbe, new_id(), form, revocation=_revocation(world)
        )
        return open_reg_form_response(S.RegFormResponse(reg_form_res=body), reg, trust)

    assert len(answered(_fields(MAX_FORM_FIELDS)).fields) == MAX_FORM_FIELDS
    reason = refused(DECODING_FAILURE, answered, _fields(MAX_FORM_FIELDS + 1))
    assert reason == "registration form too large"


def test_a_me_aq_c_init_res_asking_for_too_many_fields_is_refused(world: World) -> None:
    def answered(form: FormTemplate) -> Any:
        trust = TrustStore(world.root.der)
        request, state = build_me_aq_c_init_request(
            S.REQUEST_TYPE_MER_INITIAL_BOTH, MerchantIdentity("m-0001", "Corner Shop"),
            "testbrand", b"lid-m",
        )  # fmt: skip
        body = build_me_aq_c_init_response(
            _ca(world, "merchant"), request, b"lid-ca", new_id(), form,
            revocation=_revocation(world),
        )  # fmt: skip
        return open_me_aq_c_init_response(S.MeAqCInitResponse(me_aq_c_init_res=body), state, trust)

    assert len(answered(_fields(MAX_FORM_FIELDS)).form.fields) == MAX_FORM_FIELDS
    reason = refused(DECODING_FAILURE, answered, _fields(MAX_FORM_FIELDS + 1))
    assert reason == "registration form too large"
