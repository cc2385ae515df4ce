"""A bank made by ``init_bank`` per profile, its CA served by a real gRPC server on port 0.

The issuer is a small in-memory ``IssuerDirectory`` (a test double of the issuer ledger,
another engineer's component); everything else is real: keys in a software keystore,
certificates, ca.db, the servicer and its stub.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from gateway.bank_pki import BankPki, load_bank_pki, open_ca_store
from gateway.ca import CertificateAuthority, CertificateAuthorityServicer
from gateway.config import BankConfig, load
from gateway.provisioning import init_bank
from gateway.server import ServerLimits, ServiceBinding, create_server
from setcore.freshness import new_id
from setcore.pan import PAN
from setpay.v1 import registration_pb2, services_pb2_grpc
from tests.cards import MASTERCARD, VISA, VISA_2

COMPLETE = registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE
PENDED = registration_pb2.CERT_STATUS_CODE_REQUEST_PENDED
UNKNOWN_ACCOUNT = registration_pb2.CERT_STATUS_CODE_UNKNOWN_ACCOUNT
REJECTED_BY_ISSUER = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER

# Test cards (the brands' published test numbers, ``tests.cards``).
CARD = VISA
REVIEW_CARD = MASTERCARD
UNKNOWN_CARD = VISA_2
EXPIRY = "203012"
ALL_TEST_CARDS = (CARD, REVIEW_CARD, UNKNOWN_CARD)


@dataclass
class DictIssuer:
    """An IssuerDirectory over a dict: PAN digits -> (expiry, what the issuer says); the
    acquirer's side as ``gateway.issuer.LedgerDirectory`` answers it, over a dict of
    merchant ID -> settlement account id."""

    cards: dict[str, tuple[str, int]]
    merchants: list[tuple[str, str]] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=dict)

    def check_card(self, pan: PAN, expiry: str) -> int:
        entry = self.cards.get(pan.reveal())
        if entry is None:
            return UNKNOWN_ACCOUNT
        known_expiry, answer = entry
        if known_expiry != expiry:
            return REJECTED_BY_ISSUER
        return answer

    def card_key(self, pan: PAN) -> bytes:
        # The bank keys it with the ledger's index key; a test needs it only stable.
        return hashlib.sha256(b"test card key\x00" + pan.reveal().encode()).digest()

    def may_register_merchant(self, merchant_id: str, account: str | None) -> bool:
        held = self.accounts.get(merchant_id)
        return held is None or account == held

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        self.merchants.append((merchant_id, name))
        self.accounts.setdefault(merchant_id, f"merchant-{new_id().hex()[:24]}")


@dataclass
class Bank:
    """A running CA: its directory, PKI, plain-Python CA and a stub to its gRPC service."""

    directory: Path
    config: BankConfig
    pki: BankPki
    ca: CertificateAuthority
    issuer: DictIssuer
    stub: services_pb2_grpc.CertificateAuthorityServiceStub
    profile: str

    @property
    def brand_id(self) -> str:
        return self.pki.brand_id


# Server threads: the tests call one RPC at a time; a few threads leave room for retries.
SERVER_THREADS = 4
# Far above these tests' requests and answers (a few certificates each).
MAX_MESSAGE_BYTES = 1 << 20


@contextmanager
def serving_channel(ca: CertificateAuthority) -> Iterator[grpc.Channel]:
    """``ca`` served as the bank serves it (``gateway.server.create_server``), on port 0;
    a channel to it."""
    limits = ServerLimits(
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_concurrent_rpcs=SERVER_THREADS,
        threads=SERVER_THREADS,
    )
    binding = ServiceBinding("CertificateAuthorityService", CertificateAuthorityServicer(ca))
    server, port, health = create_server([binding], "127.0.0.1:0", limits)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        health.stop()
        server.stop(None)


@contextmanager
def serving(
    ca: CertificateAuthority,
) -> Iterator[services_pb2_grpc.CertificateAuthorityServiceStub]:
    """``ca`` served as ``serving_channel`` serves it; a stub to it."""
    with serving_channel(ca) as channel:
        yield services_pb2_grpc.CertificateAuthorityServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def banks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Bank]]:
    """Banks by profile, made lazily (RSA key generation is slow on tokens: make each once)."""
    made: dict[str, Bank] = {}
    cleanup = ExitStack()

    def make(profile: str) -> Bank:
        directory = tmp_path_factory.mktemp(f"bank-{profile}") / "bank"
        result = init_bank(directory, profile=profile, env={})
        config = load(result.config_path, env={})
        pki = cleanup.enter_context(closing(load_bank_pki(config)))
        issuer = DictIssuer({CARD: (EXPIRY, COMPLETE), REVIEW_CARD: (EXPIRY, PENDED)})
        ca = CertificateAuthority(pki.authority_keys(), open_ca_store(config), pki.trust, issuer)
        stub = cleanup.enter_context(serving(ca))
        return Bank(result.directory, config, pki, ca, issuer, stub, profile)

    class Lazy(dict[str, Bank]):
        def __missing__(self, profile: str) -> Bank:
            self[profile] = bank = make(profile)
            return bank

    made = Lazy()
    with cleanup:
        yield made


@pytest.fixture(params=["ec", "rsa"])
def bank(request: pytest.FixtureRequest, banks: dict[str, Bank]) -> Bank:
    """The bank of each profile in turn."""
    return banks[request.param]


@pytest.fixture
def ec_bank(banks: dict[str, Bank]) -> Bank:
    """The EC bank alone, for checks that do not depend on the profile."""
    return banks["ec"]
