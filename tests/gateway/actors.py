"""Test code playing wallet and merchant with setcore against a real, running bank.

``World`` is ``setpay init`` output served by ``gateway.process.start_bank`` on loopback
ports chosen by the OS, with real TLS (mutual for the PaymentGateway), real keys in a
software keystore, a real SQLite ledger. The actors below use the setcore builders and
openers exactly as a wallet or merchant does; tests change one thing to make a check fail.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway import authorize as gateway_authorize
from gateway.config import BankConfig, load
from gateway.process import RunningBank, start_bank
from gateway.provisioning import init_bank
from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.authorization import (
    AUTHORIZE_REQUEST_CT,
    AuthRequestState,
    AuthResult,
    build_auth_request,
    open_auth_response,
)
from setcore.credentials import Credentials
from setcore.dualsig import MerchantView
from setcore.error_message import request_digest
from setcore.gateway_admin import build_pcert_request, open_pcert_response
from setcore.pan import PAN, luhn_valid
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import (
    CardData,
    MerchantOrder,
    Order,
    build_pinit_request,
    build_pinit_response,
    build_purchase_request,
    open_pinit_response,
    open_purchase_request,
    verify_purchase,
)
from setcore.registration_cardholder import (
    build_card_c_init_request,
    build_card_cert_request,
    build_reg_form_request,
    open_card_c_init_response,
    open_card_cert_response,
    open_reg_form_response,
)
from setcore.registration_merchant import (
    MerchantIdentity,
    build_me_aq_c_init_request,
    build_merchant_cert_request,
    open_me_aq_c_init_response,
    open_merchant_cert_response,
)
from setcore.signers import GatewayIdentity
from setpay.v1 import authorization_pb2, common_pb2, registration_pb2, services_pb2_grpc

EUR = 978
EXPIRY = "203012"
# Test cards live only under tests/: a test BIN plus a serial, Luhn digit appended.
TEST_BIN = "499998"
MER_INITIAL = registration_pb2.REQUEST_TYPE_MER_INITIAL_BOTH


def make_pan(serial: int) -> str:
    """The ``serial``-th 16-digit test card number."""
    body = f"{TEST_BIN}{serial:09d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def eur(amount: int, exp10: int = 2) -> common_pb2.CurrencyAmount:
    """An amount in euro cents (at another exponent only to test its refusal)."""
    return common_pb2.CurrencyAmount(currency=EUR, amount=amount, exp10=exp10)


@dataclass
class World:
    """A running bank plus the channels and keys the actors use."""

    directory: Path
    config: BankConfig
    running: RunningBank
    gateway: services_pb2_grpc.PaymentGatewayServiceStub
    ca: services_pb2_grpc.CertificateAuthorityServiceStub
    channels: list[grpc.Channel]
    keys: SoftwareBackend
    profile: str
    _serials: Iterator[int] = field(default_factory=itertools.count)

    @property
    def root(self) -> bytes:
        return self.running.pki.root_der

    def trust(self) -> TrustStore:
        """A party's trust store: the pinned root; the BCI arrives stapled to responses."""
        return TrustStore(self.root)

    def key(self, usage: KeyUsage) -> KeyHandle:
        algorithm = KeyAlgorithm.EC_P256 if self.profile == "ec" else KeyAlgorithm.RSA_2048
        return self.keys.generate(f"k{next(self._serials)}", usage, algorithm)

    def new_pan(self) -> str:
        return make_pan(next(self._serials))

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.running.stop(None)


def channels_for(directory: Path, gateway_port: int, ca_port: int) -> tuple[grpc.Channel, ...]:
    """A mutual-TLS channel to the gateway (merchant client cert) and a TLS one to the CA."""
    tls = directory / "tls"
    root = (tls / "root.pem").read_bytes()
    merchant = grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=(tls / "merchant-client.key").read_bytes(),
        certificate_chain=(tls / "merchant-client.pem").read_bytes(),
    )
    gateway = grpc.secure_channel(f"127.0.0.1:{gateway_port}", merchant)
    ca = grpc.secure_channel(f"127.0.0.1:{ca_port}", grpc.ssl_channel_credentials(root))
    return gateway, ca


def open_world(directory: Path, profile: str, *, create: bool = True) -> World:
    """``setpay init`` (unless the bank exists) and serve it on ports 0."""
    if create:
        init_bank(directory, profile=profile, merchant_tls=True, env={})
    config = load(directory / "setpay.toml", env={})
    running = start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    gw_channel, ca_channel = channels_for(directory, running.port, running.ca_port)
    return World(
        directory, config, running,
        services_pb2_grpc.PaymentGatewayServiceStub(gw_channel),  # type: ignore[no-untyped-call]
        services_pb2_grpc.CertificateAuthorityServiceStub(ca_channel),  # type: ignore[no-untyped-call]
        [gw_channel, ca_channel], SoftwareBackend.ephemeral(), profile,
    )  # fmt: skip


@dataclass
class Merchant:
    """A registered merchant with the gateway's certificates it fetched (PCertReq)."""

    merchant_id: str
    credentials: Credentials
    trust: TrustStore
    gateway_kex: VerifiedCertificate
    gateway_chain: tuple[bytes, ...]
    #: The gateway its PCertRes named: the one whose answers it takes.
    gateway_identity: GatewayIdentity


def register_merchant(world: World, merchant_id: str) -> Merchant:
    """Me-AqCInit + CertReq through the CA, then PCertReq through the gateway."""
    trust = world.trust()
    identity = MerchantIdentity(merchant_id, f"Shop {merchant_id}")
    request, state = build_me_aq_c_init_request(MER_INITIAL, identity, "setpay", os.urandom(8))
    registration = open_me_aq_c_init_response(world.ca.MeAqCInit(request), state, trust)
    sig, kex = world.key(KeyUsage.SIGNATURE), world.key(KeyUsage.KEY_EXCHANGE)
    request, req_state = build_merchant_cert_request(world.keys, sig, kex, registration, state)
    outcome = open_merchant_cert_response(world.ca.Cert(request), req_state, trust)
    assert outcome.complete, outcome
    credentials = outcome.credentials(world.keys, req_state)
    request, pstate = build_pcert_request(credentials, [("setpay", TEST_BIN)], merchant_id)
    certs = open_pcert_response(
        world.gateway.GatewayCertificates(request), credentials, pstate, trust
    )
    item = certs.items[0]
    assert item.key_exchange is not None and item.signature is not None
    gateway = GatewayIdentity.of(item.signature)
    return Merchant(merchant_id, credentials, trust, item.key_exchange, item.chain, gateway)


@dataclass
class Cardholder:
    """A registered cardholder: signing credentials and the card data the wallet keeps."""

    credentials: Credentials
    card: CardData
    trust: TrustStore
    account_id: str


def register_cardholder(
    world: World, *, limit: int = 100_000, pan: str | None = None, expiry: str = EXPIRY
) -> Cardholder:
    """Open a card account, then the full cardholder registration through the CA."""
    pan = pan or world.new_pan()
    account = world.running.ledger.open_card_account(pan, expiry, limit, EUR)
    trust = world.trust()
    lid = os.urandom(8)
    request, state = build_card_c_init_request("setpay", lid)
    contact = open_card_c_init_response(world.ca.CardCInit(request), state, trust)
    request, reg = build_reg_form_request(contact, PAN(pan), lid)
    form = open_reg_form_response(world.ca.RegForm(request), reg, trust)
    key = world.key(KeyUsage.SIGNATURE)
    request, cstate = build_card_cert_request(world.keys, key, form, reg, PAN(pan), expiry)
    outcome = open_card_cert_response(world.ca.Cert(request), cstate, trust)
    assert outcome.complete and outcome.card is not None, outcome
    return Cardholder(outcome.credentials(world.keys, key), outcome.card, trust, account.account_id)


@dataclass
class Purchase:
    """One purchase as the merchant holds it after verifying the PReq."""

    view: MerchantView
    order: MerchantOrder
    cardholder_cert: VerifiedCertificate


def purchase(
    merchant: Merchant,
    cardholder: Cardholder,
    amount: int,
    description: bytes = b"1 book",
    *,
    exp10: int = 2,
) -> Purchase:
    """PInit, PReq, and the merchant's checks (wallet and merchant sides in one go)."""
    request, pstate = build_pinit_request(cardholder.card.pan, "setpay", os.urandom(8))
    trans_ids = common_pb2.TransIDs(
        lid_c=request.lid_c, lid_m=os.urandom(8), xid=os.urandom(32),
        preq_date_unix_ms=int(time.time() * 1000), language="en",
    )  # fmt: skip
    chall_m = os.urandom(32)
    response = build_pinit_response(
        merchant.credentials, request, trans_ids, chall_m, merchant.gateway_kex.der,
        merchant.gateway_chain,
    )  # fmt: skip
    offer = open_pinit_response(response, pstate, cardholder.trust)
    order = Order(description, eur(amount, exp10))
    preq, _ = build_purchase_request(cardholder.credentials, offer, order, cardholder.card, pstate)
    mine = MerchantOrder(trans_ids, chall_m, description, eur(amount, exp10), "setpay")
    view = open_purchase_request(preq)
    cert = verify_purchase(view, mine, merchant.trust)
    return Purchase(view, mine, cert)


def as_sent(
    state: AuthRequestState, request: authorization_pb2.AuthorizeRequest
) -> AuthRequestState:
    """``state`` for ``request`` as it is sent now: a test that rewrites a request after
    building it plays the merchant that sent those bytes, which the gateway's Error names."""
    return replace(state, request_digest=request_digest(AUTHORIZE_REQUEST_CT, request.auth_req))


def auth_request(
    merchant: Merchant,
    bought: Purchase,
    amount: int | None = None,
    *,
    pi_bytes: bytes | None = None,
    capture_now: bool = False,
    rrpid: bytes | None = None,
) -> tuple[authorization_pb2.AuthorizeRequest, AuthRequestState]:
    """The merchant's AuthReq for a verified purchase (the PI forwarded byte for byte)."""
    asked = bought.order.amount.amount if amount is None else amount
    return build_auth_request(
        merchant.credentials, merchant.gateway_kex.recipient(),
        bought.view.pi_bytes if pi_bytes is None else pi_bytes,
        bought.order.trans_ids, bought.view.oi_bytes, bought.order.description,
        bought.order.amount, bought.view.oi_data.od_salt, eur(asked), merchant.merchant_id,
        capture_now=capture_now, rrpid=rrpid,
    )  # fmt: skip


def authorize(
    world: World, merchant: Merchant, bought: Purchase, amount: int | None = None
) -> AuthResult:
    """AuthReq -> AuthRes through the real gateway, verified as the merchant does."""
    request, state = auth_request(merchant, bought, amount)
    return open_auth_response(
        world.gateway.Authorize(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip


def decline_left_unanswered(
    world: World, merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> tuple[authorization_pb2.AuthorizeRequest, AuthRequestState, Cardholder]:
    """A declined AuthReq whose answer failed to sign: decided in the ledger, unanswered,
    and the merchant told UNAVAILABLE (retry these bytes), never a refusal."""
    cardholder = register_cardholder(world, limit=1000)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 5000))
    send_failing_declines(world, request, monkeypatch)
    return request, state, cardholder


def send_failing_declines(
    world: World, request: authorization_pb2.AuthorizeRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send an AuthReq the ledger declines while declines fail to sign: the decision is
    kept unanswered, and the merchant told UNAVAILABLE, never a refusal."""
    send_unsigned_answers(
        world, request, monkeypatch,
        lambda decision: decision.auth_code != authorization_pb2.AUTH_CODE_APPROVED,
    )  # fmt: skip


def send_unsigned_answers(
    world: World,
    request: authorization_pb2.AuthorizeRequest,
    monkeypatch: pytest.MonkeyPatch,
    fails: Callable[[Any], bool],
) -> None:
    """Send an AuthReq while the AuthRes of every decision ``fails`` picks cannot be
    signed: the decision is kept unanswered, and the merchant told UNAVAILABLE."""
    signed = gateway_authorize.build_auth_response

    def failing(credentials, verified, decision):  # type: ignore[no-untyped-def]
        if fails(decision):
            raise RuntimeError("the signing key went away")
        return signed(credentials, verified, decision)

    with monkeypatch.context() as patched:
        patched.setattr(gateway_authorize, "build_auth_response", failing)
        with pytest.raises(grpc.RpcError) as failed:
            world.gateway.Authorize(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert failed.value.details() == "answer unavailable"
