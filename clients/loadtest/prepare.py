"""Preparation: the parties and the signed traffic, built before any clock starts.

The bench plays a merchant and many cardholders exactly as ``setpay merchant`` and
``setpay wallet`` do, with setcore's builders and openers: the merchant (a merchant ID of
each run's own) registers with the Merchant CA and fetches the gateway certificates
(PCertReq); each cardholder gets a card account (through the caller's ``AccountOpener``:
the ledger is the bank's, and the clients never import the bank), registers with the
Cardholder CA and receives its certificate. Then every purchase is made the full way
(PInit, the dual-signed PReq, the merchant's checks) and the merchant's AuthReq for it is
signed and sealed. What the load phase sends is only bytes.

The participants' keys are ephemeral software keys in this process: they are the bench's
side, not the bank's (whose keys are whatever backend the bank was made with).

Card numbers are random under the configured BIN, made here and known only to this
process and the bank; they are never printed (``PAN`` masks itself).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from clients.authority import AuthorityClient
from clients.errors import RegistrationError
from clients.transport import Caller
from hsm.base import KeyBackend, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.authorization import AuthRequestState, build_auth_request
from setcore.credentials import Credentials
from setcore.currency import exponent_for
from setcore.gateway_admin import build_pcert_request, open_pcert_response
from setcore.pan import PAN, random_pan
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.profiles import Profile
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
from setpay.v1 import common_pb2, gateway_admin_pb2, registration_pb2, services_pb2

# Local labels (LID-C, LID-M, LID-EE) are the owner's choice; 8 random bytes are plenty
# to tell the bench's apart.
LID_BYTES = 8
# A card number is the BIN, an account number and a Luhn check digit: 16 digits in all.
PAN_DIGITS = 16
# Each run registers a merchant of its own: the Merchant CA refuses an initial registration
# naming a merchant ID that still holds live certificates, and a target bank outlives the
# runs. Four random bytes keep the runs against one bank apart.
MERCHANT_SUFFIX_BYTES = 4
# A registration or PCertReq answers from the bank's database and keys; thirty seconds
# only bounds a hang of a bank that is itself under load.
SETUP_DEADLINE_SECONDS = 30.0

_GATEWAY = services_pb2.DESCRIPTOR.services_by_name["PaymentGatewayService"].full_name
GATEWAY_CERTIFICATES_METHOD = f"/{_GATEWAY}/GatewayCertificates"

AccountOpener = Callable[[PAN, str, int, int], None]
"""Opens a card account in the bank's ledger: (PAN, expiry YYYYMM, credit limit, currency)."""

Progress = Callable[[int], None]
"""Told how many more items are done (the progress bar)."""


def _no_progress(_: int) -> None:
    return None


def bench_merchant_id() -> str:
    """A merchant ID of this run's own (``bench-merchant-`` and random hex digits)."""
    return f"bench-merchant-{secrets.token_hex(MERCHANT_SUFFIX_BYTES)}"


@dataclass(frozen=True)
class Population:
    """Who takes part and what they buy."""

    profile: Profile
    brand_id: str
    bin: str
    cardholders: int
    expiry: str
    credit_limit: int
    currency: int
    amount: int
    merchant_id: str = field(default_factory=bench_merchant_id)

    def money(self, amount: int) -> common_pb2.CurrencyAmount:
        """An amount in this population's currency, at its ISO 4217 minor unit (the only
        exponent an amount is taken in: 0 for JPY, 3 for BHD, 2 for most)."""
        return common_pb2.CurrencyAmount(
            currency=self.currency, amount=amount, exp10=exponent_for(self.currency)
        )


@dataclass(frozen=True)
class Merchant:
    """The bench's merchant: its credentials and the gateway certificates it fetched.

    ``gateway_identity`` is the gateway its PCertRes named, whose answers alone it takes
    (as ``setpay merchant`` does): the ceiling answers with the same bank's gateway keys.
    """

    merchant_id: str
    credentials: Credentials
    trust: TrustStore
    gateway_kex: VerifiedCertificate
    gateway_chain: tuple[bytes, ...]
    gateway_identity: GatewayIdentity


@dataclass(frozen=True)
class Cardholder:
    """A registered cardholder: signing credentials and the card the wallet keeps."""

    credentials: Credentials
    card: CardData
    trust: TrustStore


@dataclass(frozen=True)
class PreparedAuth:
    """One AuthReq ready to send: the exact request bytes and what checks the answer."""

    request: bytes
    state: AuthRequestState
    built_ms: int


class Parties:
    """The merchant and the cardholders, registered with one bank."""

    def __init__(
        self,
        population: Population,
        root_der: bytes,
        ca_channel: grpc.Channel,
        gateway_channel: grpc.Channel,
        open_account: AccountOpener,
    ) -> None:
        self.population = population
        self._root = root_der
        self._authority = AuthorityClient(Caller(ca_channel, "CA"))
        self._gateway = Caller(gateway_channel, "gateway")
        self._open_account = open_account
        self.keys: KeyBackend = SoftwareBackend.ephemeral()
        self._labels = 0
        self.merchant: Merchant | None = None
        self.cardholders: list[Cardholder] = []

    def close(self) -> None:
        """Forget the ephemeral keys."""
        self.keys.close()

    def _key(self, usage: KeyUsage) -> KeyHandle:
        self._labels += 1
        algorithm = (
            self.population.profile.signature_key
            if usage is KeyUsage.SIGNATURE
            else self.population.profile.key_exchange_key
        )
        return self.keys.generate(f"bench-{self._labels}", usage, algorithm)

    def register_merchant(self) -> Merchant:
        """Me-AqCInit and CertReq through the Merchant CA, then PCertReq to the gateway."""
        pop = self.population
        trust = TrustStore(self._root)
        identity = MerchantIdentity(pop.merchant_id, f"Bench {pop.merchant_id}")
        request, state = build_me_aq_c_init_request(
            registration_pb2.REQUEST_TYPE_MER_INITIAL_BOTH, identity, pop.brand_id,
            os.urandom(LID_BYTES),
        )  # fmt: skip
        registration = open_me_aq_c_init_response(
            self._authority.me_aq_c_init(request, sent=state.sent), state, trust
        )
        sig, kex = self._key(KeyUsage.SIGNATURE), self._key(KeyUsage.KEY_EXCHANGE)
        cert_request, req_state = build_merchant_cert_request(
            self.keys, sig, kex, registration, state
        )
        outcome = open_merchant_cert_response(self._authority.cert(cert_request), req_state, trust)
        if not outcome.complete:
            raise RegistrationError("the Merchant CA did not issue the bench merchant's "
                                    "certificates", outcome.status)  # fmt: skip
        credentials = outcome.credentials(self.keys, req_state)
        pcert, pstate = build_pcert_request(credentials, [(pop.brand_id, pop.bin)], pop.merchant_id)
        answer = self._gateway.call(
            GATEWAY_CERTIFICATES_METHOD, pcert.SerializeToString(),
            gateway_admin_pb2.GatewayCertificatesResponse, deadline=SETUP_DEADLINE_SECONDS,
        )  # fmt: skip
        certs = open_pcert_response(answer, credentials, pstate, trust)
        item = certs.items[0]
        if item.key_exchange is None or item.signature is None:
            raise RegistrationError(f"the gateway has no certificate for BIN {pop.bin}", item.code)
        self.merchant = Merchant(
            pop.merchant_id, credentials, trust, item.key_exchange, item.chain,
            GatewayIdentity.of(item.signature),
        )  # fmt: skip
        return self.merchant

    def register_cardholder(self) -> Cardholder:
        """Open a card account, then the cardholder's registration with the Cardholder CA."""
        pop = self.population
        pan = random_pan(pop.bin, PAN_DIGITS)
        self._open_account(pan, pop.expiry, pop.credit_limit, pop.currency)
        trust = TrustStore(self._root)
        lid = os.urandom(LID_BYTES)
        request, state = build_card_c_init_request(pop.brand_id, lid)
        answer = self._authority.card_c_init(request, sent=state.sent)
        contact = open_card_c_init_response(answer, state, trust)
        form_request, reg = build_reg_form_request(contact, pan, lid)
        form = open_reg_form_response(self._authority.reg_form(form_request), reg, trust)
        key = self._key(KeyUsage.SIGNATURE)
        cert_request, cstate = build_card_cert_request(self.keys, key, form, reg, pan, pop.expiry)
        outcome = open_card_cert_response(self._authority.cert(cert_request), cstate, trust)
        if not outcome.complete or outcome.card is None:
            raise RegistrationError("the Cardholder CA did not issue a bench cardholder's "
                                    "certificate", outcome.status)  # fmt: skip
        holder = Cardholder(outcome.credentials(self.keys, key), outcome.card, trust)
        self.cardholders.append(holder)
        return holder

    def register(self, progress: Progress = _no_progress) -> None:
        """The merchant, then every cardholder (``progress`` told after each party)."""
        self.register_merchant()
        progress(1)
        for _ in range(self.population.cardholders):
            self.register_cardholder()
            progress(1)


def build_authorizations(
    merchant: Merchant,
    cardholders: Sequence[Cardholder],
    population: Population,
    count: int,
    progress: Progress = _no_progress,
    *,
    first: int = 0,
) -> list[PreparedAuth]:
    """``count`` purchases, round-robin over the cardholders, each with its signed AuthReq.

    ``first`` shifts the round-robin so that consecutive batches spread over every card.
    """
    if not cardholders:
        raise ValueError("no cardholders to buy with")
    prepared = []
    for index in range(count):
        holder = cardholders[(first + index) % len(cardholders)]
        prepared.append(_authorization(merchant, holder, population))
        progress(1)
    return prepared


def _authorization(merchant: Merchant, holder: Cardholder, population: Population) -> PreparedAuth:
    # Wallet and merchant sides of one purchase, then the merchant's AuthReq.
    amount = population.money(population.amount)
    pinit, pstate = build_pinit_request(holder.card.pan, population.brand_id, os.urandom(LID_BYTES))
    trans_ids = common_pb2.TransIDs(
        lid_c=pinit.lid_c, lid_m=os.urandom(LID_BYTES), xid=os.urandom(32),
        preq_date_unix_ms=time.time_ns() // 1_000_000, language="en",
    )  # fmt: skip
    chall_m = os.urandom(32)
    offer = open_pinit_response(
        build_pinit_response(
            merchant.credentials, pinit, trans_ids, chall_m, merchant.gateway_kex.der,
            merchant.gateway_chain,
        ),
        pstate, holder.trust,
    )  # fmt: skip
    description = b"bench order"
    preq, _ = build_purchase_request(
        holder.credentials, offer, Order(description, amount), holder.card, pstate
    )
    order = MerchantOrder(trans_ids, chall_m, description, amount, population.brand_id)
    view = open_purchase_request(preq)
    verify_purchase(view, order, merchant.trust)
    request, state = build_auth_request(
        merchant.credentials, merchant.gateway_kex.recipient(), view.pi_bytes, trans_ids,
        view.oi_bytes, description, amount, view.oi_data.od_salt, amount, merchant.merchant_id,
    )  # fmt: skip
    return PreparedAuth(request.SerializeToString(), state, time.time_ns() // 1_000_000)
