"""What binds a registration request to its session (SET's LID-CA), each clause alone.

``session_valid``: the session belongs to this requester (LID-EE), was opened at this
CA (its CertificateType) and has not expired; and for a merchant or gateway, the
identity the CertReq names is the one that opened the session. Each test below leaves
every other binding right (Chall-CA, its request type, the form, the key), so the one
clause under test is all that refuses: a CertReq gets CHALLENGE_MISMATCH (or
REJECTED_BY_AGENT for the identity), a RegFormReq UNKNOWN_LID, and nothing is used up.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca import CaPolicy, CertificateAuthority
from hsm.base import KeyUsage
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import new_id, now_ms
from setcore.pan import PAN
from setcore.registration_cardholder import (
    build_reg_form_request,
    open_card_cert_response,
    open_reg_form_response,
)
from setcore.registration_merchant import (
    GatewayIdentity,
    MerchantIdentity,
    open_merchant_cert_response,
)
from setpay.v1 import registration_pb2

from .conftest import CARD, EXPIRY, Bank, serving
from .flows import (
    CARD_INITIAL,
    PGWY_INITIAL,
    card_request,
    merchant_request,
    new_key,
    register_cardholder,
    register_merchant,
    start_cardholder,
    start_merchant,
)

S = registration_pb2

# A session of the short-lived CA lasts a minute; its clock is then moved past that, and
# still well inside a request's freshness window (``FRESHNESS_WINDOW_MS``), so that the
# requests dated by the real clock are judged by their session alone.
LIFETIME_MS = 60 * 1000
PAST_THE_SESSION_MS = LIFETIME_MS + 5 * 1000


class Clock:
    """The CA's clock (ms): the real one moved on by ``offset``."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return now_ms() + self.offset


@contextmanager
def _ca_over(bank: Bank, policy: CaPolicy, clock: Clock | None = None) -> Iterator[Bank]:
    """``bank``'s CAs (its keys, ca.db and acquirer's books) run under ``policy`` and
    ``clock``, served on a port of their own, as the ``gateway_ca`` fixture does."""
    store = open_ca_store(bank.config)
    ca = CertificateAuthority(
        bank.pki.authority_keys(), store, bank.pki.trust, bank.issuer, policy=policy,
        clock=clock or now_ms,
    )  # fmt: skip
    try:
        with serving(ca) as stub:
            yield replace(bank, ca=ca, stub=stub)
    finally:
        store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def short_lived(ec_bank: Bank, clock: Clock) -> Iterator[Bank]:
    """``ec_bank``'s CAs with sessions of LIFETIME_MS, on ``clock``."""
    with _ca_over(ec_bank, CaPolicy(session_lifetime_ms=LIFETIME_MS), clock) as bank:
        yield bank


@pytest.fixture
def gateway_ca(ec_bank: Bank) -> Iterator[Bank]:
    """``ec_bank``'s CAs with gateway registration switched on."""
    with _ca_over(ec_bank, CaPolicy(gateway_registration=True)) as bank:
        yield bank


def _merchant(name: str) -> MerchantIdentity:
    return MerchantIdentity(f"m-{name}-{new_id().hex()[:8]}", f"{name} shop", "400000")


def _gateway() -> GatewayIdentity:
    return GatewayIdentity("400000", f"gw-{new_id().hex()[:8]}")


# --- LID-EE: the session is this requester's ----------------------------------------------


def test_a_cert_request_on_another_requesters_session_is_refused(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    # The session's LID-CA and Chall-CA, another LID-EE.
    stranger = replace(session, lid_ee=os.urandom(8))
    request, state = card_request(stranger, key, CARD, EXPIRY)
    outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH
    assert outcome.certificate is None
    # Nothing used up: the session's own requester still registers, with the same key.
    mine, *_ = register_cardholder(ec_bank, CARD, EXPIRY, key=key, session=session)
    assert mine.complete


def test_a_reg_form_request_on_another_requesters_session_is_refused(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, state = build_reg_form_request(
        session.registration.ca, PAN(CARD), os.urandom(8), request_type=CARD_INITIAL
    )
    with pytest.raises(PeerError) as caught:
        open_reg_form_response(ec_bank.stub.RegForm(request), state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    # The session's own requester still registers on it.
    mine, *_ = register_cardholder(ec_bank, CARD, EXPIRY, session=session)
    assert mine.complete


# --- expiry: the session has not expired ----------------------------------------------------


def test_a_cert_request_after_its_session_expired_is_refused(
    short_lived: Bank, clock: Clock
) -> None:
    bank = short_lived
    session = start_cardholder(bank, CARD)
    clock.offset = PAST_THE_SESSION_MS
    key = new_key(bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, key, CARD, EXPIRY)
    outcome = open_card_cert_response(bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH
    assert outcome.certificate is None
    # The key was not claimed: a session opened now certifies it.
    fresh, *_ = register_cardholder(bank, CARD, EXPIRY, key=key)
    assert fresh.complete


def test_a_reg_form_request_after_its_session_expired_is_refused(
    short_lived: Bank, clock: Clock
) -> None:
    bank = short_lived
    session = start_cardholder(bank, CARD)  # its RegFormReq answered within the session

    def reg_form_again() -> object:
        request, state = build_reg_form_request(
            session.registration.ca, PAN(CARD), session.lid_ee, request_type=CARD_INITIAL
        )
        return open_reg_form_response(bank.stub.RegForm(request), state, session.trust)

    clock.offset = PAST_THE_SESSION_MS
    with pytest.raises(PeerError) as caught:
        reg_form_again()
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def test_a_merchant_cert_request_after_its_session_expired_is_refused(
    short_lived: Bank, clock: Clock
) -> None:
    bank = short_lived
    identity = _merchant("late")
    session = start_merchant(bank, identity)
    clock.offset = PAST_THE_SESSION_MS
    outcome, *_ = register_merchant(bank, identity, session=session)
    assert outcome.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH
    assert outcome.signature is None and outcome.key_exchange is None
    assert (identity.merchant_id, identity.merchant_name) not in bank.issuer.merchants


# --- CA type: the session was opened at this CA ------------------------------------------


def _set_request_type(bank: Bank, lid_ca: bytes, request_type: int) -> None:
    """Write ``request_type`` into the stored session ``lid_ca`` of ca.db."""
    db = sqlite3.connect(bank.config.path(bank.config.ca_db))
    try:
        with db:
            db.execute(
                "UPDATE sessions SET request_type = ? WHERE lid_ca = ?", (request_type, lid_ca)
            )
    finally:
        db.close()


def test_a_cardholder_cert_request_on_a_merchant_ca_session_is_refused(ec_bank: Bank) -> None:
    # The Cardholder CA's contact and form, the LIDs and Chall-CA of a session opened at
    # the Merchant CA. The request type of a session names its CA too: the stored one is
    # made the cardholder's, so that the CA type alone differs.
    card = start_cardholder(ec_bank, CARD)
    merchant = start_merchant(ec_bank, _merchant("elsewhere"))
    lid_ca = merchant.registration.ca.lid_ca
    _set_request_type(ec_bank, lid_ca, CARD_INITIAL)
    forged = replace(
        card,
        registration=replace(card.registration, ca=replace(card.registration.ca, lid_ca=lid_ca)),
        form=replace(card.form, chall_ca=merchant.registration.form.chall_ca),
        lid_ee=merchant.state.lid_ee,
    )
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(forged, key, CARD, EXPIRY)
    outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, card.trust)
    assert outcome.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH
    assert outcome.certificate is None
    # Nothing used up: the cardholder's own session certifies the same key.
    mine, *_ = register_cardholder(ec_bank, CARD, EXPIRY, key=key, session=card)
    assert mine.complete


# --- identity: the one that opened the session (SET-PROTOCOL.md 4.2) -------------------------


def test_a_merchant_cert_request_naming_another_merchant_than_the_sessions_is_refused(
    ec_bank: Bank,
) -> None:
    # Two checks refuse this one: the identity check, and the merchant-opening row, which
    # is noted only for the session's own identity (the decision then finds none).
    opened_as, named = _merchant("opener"), _merchant("other")
    session = start_merchant(ec_bank, opened_as)
    other = replace(session, state=replace(session.state, identity=named))
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(other, sig, kex)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    assert outcome.signature is None and outcome.key_exchange is None
    assert (named.merchant_id, named.merchant_name) not in ec_bank.issuer.merchants
    # Nothing used up: the session's own merchant still registers with the same keys.
    outcome, *_ = register_merchant(ec_bank, opened_as, session=session, keys=(sig, kex))
    assert outcome.complete


def test_a_gateway_cert_request_naming_another_gateway_than_the_sessions_is_refused(
    gateway_ca: Bank,
) -> None:
    # A gateway opens no settlement account, so no merchant-opening row stands in for the
    # identity check here: it alone refuses.
    opened_as, named = _gateway(), _gateway()
    session = start_merchant(gateway_ca, opened_as, request_type=PGWY_INITIAL)
    other = replace(session, state=replace(session.state, identity=named))
    sig, kex = new_key(gateway_ca, KeyUsage.SIGNATURE), new_key(gateway_ca, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(other, sig, kex)
    outcome = open_merchant_cert_response(gateway_ca.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    assert outcome.signature is None and outcome.key_exchange is None
    # Nothing used up: the gateway that opened the session still registers, same keys.
    outcome, *_ = register_merchant(gateway_ca, opened_as, session=session, keys=(sig, kex))
    assert outcome.complete
