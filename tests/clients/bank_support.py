"""A real bank for the client tests: ``setpay init`` output served on loopback ports.

Everything is the real thing: ``gateway.provisioning.init_bank`` writes the bank (keys in a
software keystore, certificates, ``ca.db``, TLS files), ``gateway.bank_pki.load_bank_pki``
loads it, the issuer ledger is SQLite, and the lead's ``gateway.server.create_server``
serves the PaymentGateway service (mutual TLS) and the CertificateAuthority service
(server-authenticated TLS) on ports chosen by the OS, as ``gateway.process.start_bank``
does. It is assembled here rather than by ``start_bank`` only so that the issuer can pend a
card for a person to look at (``IssuerDesk``), which the pended-registration test needs.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from clients.authority import AuthorityClient
from clients.errors import ClientError
from clients.identity import read_root, write_certificates
from clients.merchant.config import AnswerMode, write_config
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import MerchantRegistrar
from clients.merchant.runtime import Merchant
from clients.peers import PeerConfig
from clients.transport import Caller, open_channel
from clients.wallet.config import load as load_wallet_config
from clients.wallet.config import write_config as write_wallet_config
from clients.wallet.runtime import Wallet
from gateway.bank import Bank
from gateway.bank_pki import BankPki, load_bank_pki, open_ca_store
from gateway.ca import CaStore, CertificateAuthority, CertificateAuthorityServicer
from gateway.config import BankConfig
from gateway.config import load as load_bank_config
from gateway.health_monitor import HealthMonitor
from gateway.issuer import LedgerDirectory, open_ledger
from gateway.ledger import Ledger
from gateway.process import tls_config
from gateway.provisioning import init_bank
from gateway.server import ServerLimits, ServiceBinding, create_server
from gateway.servicer import PaymentGatewayServicer
from hsm.uri import PASSPHRASE_ENV, open_backend
from setcore.pan import PAN, luhn_valid
from setcore.pki.truststore import TrustStore
from setcore.profiles import EC, Profile
from setpay.v1 import registration_pb2

# Test card numbers live only under tests/: a BIN of the test range plus a serial number.
TEST_BIN = "499999"
EXPIRY = "203012"
EUR = 978
CREDIT_LIMIT = 100_000
# Server limits for the test bank: small, explicit.
LIMITS = ServerLimits(max_message_bytes=1 << 20, max_concurrent_rpcs=64, threads=8)
WALLET_PASSPHRASE = "wallet passphrase for tests"


class IssuerDesk:
    """The issuer's answer to the CA: the real ledger directory, except for cards the
    issuer wants a person to look at first (those are pended until decided)."""

    def __init__(self, ledger: Ledger) -> None:
        self._directory = LedgerDirectory(ledger)
        self._review: set[str] = set()

    def review(self, pan: PAN) -> None:
        """Pend the next registrations of this card."""
        self._review.add(pan.reveal())

    def check_card(self, pan: PAN, expiry: str) -> int:
        if pan.reveal() in self._review:
            return registration_pb2.CERT_STATUS_CODE_REQUEST_PENDED
        return self._directory.check_card(pan, expiry)

    def card_key(self, pan: PAN) -> bytes:
        return self._directory.card_key(pan)

    def may_register_merchant(self, merchant_id: str, account: str | None) -> bool:
        return self._directory.may_register_merchant(merchant_id, account)

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        self._directory.merchant_registered(merchant_id, name)


def test_pan(serial: int) -> str:
    """The ``serial``-th 16-digit test card number (Luhn check digit appended)."""
    body = f"{TEST_BIN}{serial:09d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@dataclass
class RunningBank:
    """The bank, serving."""

    directory: Path
    config: BankConfig
    pki: BankPki
    ledger: Ledger
    issuer: IssuerDesk
    authority: CertificateAuthority
    bank: Bank
    ca_store: CaStore
    servers: list[tuple[grpc.Server, HealthMonitor]]
    gateway_port: int
    ca_port: int
    _cards: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def gateway_target(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    @property
    def ca_target(self) -> str:
        return f"127.0.0.1:{self.ca_port}"

    @property
    def tls(self) -> Path:
        """The bank's TLS files (issued by its transport CA, ``root.pem``)."""
        return self.directory / "tls"

    @property
    def brand_root(self) -> bytes:
        """The brand root every SET chain ends at (not the TLS root)."""
        return (self.directory / "certs/brand-root.der").read_bytes()

    def new_card(self) -> tuple[PAN, str]:
        """A card account of its own for one wallet."""
        pan = test_pan(next(self._cards))
        self.ledger.open_card_account(pan, EXPIRY, CREDIT_LIMIT, EUR)
        return PAN(pan), EXPIRY

    def stop(self) -> None:
        for server, health in self.servers:
            health.stop()
            server.stop(grace=None).wait()
        self.ca_store.close()
        self.ledger.close()
        self.pki.close()


@contextmanager
def serving_bank(directory: Path, keystore_passphrase: str) -> Iterator[RunningBank]:
    """``start_bank`` with the merchants' keystore passphrase in the environment for as
    long as the bank serves; both undone at the end."""
    previous = os.environ.get(PASSPHRASE_ENV)
    os.environ[PASSPHRASE_ENV] = keystore_passphrase
    running = start_bank(directory)
    try:
        yield running
    finally:
        running.stop()
        if previous is None:
            os.environ.pop(PASSPHRASE_ENV, None)
        else:
            os.environ[PASSPHRASE_ENV] = previous


def start_bank(directory: Path) -> RunningBank:
    """``setpay init`` into ``directory``, then serve gateway and CA on ports chosen by the OS."""
    init_bank(directory, profile=EC.name, merchant_tls=True)
    config = load_bank_config(directory / "setpay.toml")
    pki = load_bank_pki(config)
    ledger = open_ledger(config)
    issuer = IssuerDesk(ledger)
    ca_store = open_ca_store(config)
    authority = CertificateAuthority(pki.authority_keys(), ca_store, pki.trust, issuer)
    bank = Bank(
        credentials=pki.gateway, trust=pki.trust,
        token_key=pki.token_sealer(), ledger=ledger,
        gateway_chain=pki.gateway.chain,
    )  # fmt: skip
    gateway_server, gateway_port, gateway_health = serve_gateway(bank, config)
    ca_server, ca_port, ca_health = create_server(
        [ServiceBinding("CertificateAuthorityService", CertificateAuthorityServicer(authority))],
        "127.0.0.1:0",
        LIMITS,
        tls=tls_config(config, mutual=False),
        reflection_enabled=False,
    )
    return RunningBank(
        directory, config, pki, ledger, issuer, authority, bank, ca_store,
        [(gateway_server, gateway_health), (ca_server, ca_health)], gateway_port, ca_port,
    )  # fmt: skip


def serve_gateway(
    bank: Bank, config: BankConfig, port: int = 0
) -> tuple[grpc.Server, int, HealthMonitor]:
    """The PaymentGateway service of ``bank`` over mutual TLS (port 0: chosen by the OS)."""
    return create_server(
        [ServiceBinding("PaymentGatewayService", PaymentGatewayServicer(bank))],
        f"127.0.0.1:{port}",
        LIMITS,
        tls=tls_config(config, mutual=True),
        reflection_enabled=False,
    )


def copy_tls(bank: RunningBank, directory: Path, names: tuple[str, ...]) -> None:
    """Copy the bank-issued TLS files a client needs into its own directory."""
    (directory / "tls").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(bank.tls / name, directory / "tls" / name)


def configure_merchant(
    bank: RunningBank,
    directory: Path,
    merchant_id: str,
    answer: AnswerMode = AnswerMode.AFTER_AUTHORIZATION,
    gateway_target: str | None = None,
    *,
    pin_root: bool = True,
    keys: str = "soft:keys",
) -> None:
    """Write a merchant directory: merchant.toml, the bank-issued TLS files, the root."""
    copy_tls(bank, directory, ("root.pem", "merchant-client.pem", "merchant-client.key",
                               "merchant-server.pem", "merchant-server.key"))  # fmt: skip
    gateway = PeerConfig(
        gateway_target or bank.gateway_target, directory / "tls/root.pem",
        directory / "tls/merchant-client.pem", directory / "tls/merchant-client.key",
    )  # fmt: skip
    ca = PeerConfig(bank.ca_target, directory / "tls/root.pem")
    write_config(
        directory, merchant_id=merchant_id, name=f"Shop {merchant_id}", gateway=gateway, ca=ca,
        answer=answer, listen="127.0.0.1:0", tls_cert="tls/merchant-server.pem",
        tls_key="tls/merchant-server.key", keys=keys,
    )  # fmt: skip
    if pin_root:
        write_certificates(load_merchant_config(directory).root, [bank.brand_root])


def new_merchant(
    bank: RunningBank,
    directory: Path,
    merchant_id: str,
    answer: AnswerMode,
    gateway_target: str | None = None,
) -> Merchant:
    """Configure, register with the Merchant CA over gRPC, open and serve a merchant."""
    configure_merchant(bank, directory, merchant_id, answer, gateway_target)
    register_merchant(directory)
    merchant = Merchant.open(load_merchant_config(directory))
    merchant.serve()
    return merchant


@contextmanager
def merchant_registrar(directory: Path) -> Iterator[MerchantRegistrar]:
    """The registrar ``setpay merchant register`` and ``renew`` run, on merchant.toml as
    it is now, with the merchant's keys and the CA (both closed after)."""
    config = load_merchant_config(directory)
    backend = open_backend(config.keys_uri())
    try:
        with open_channel(config.ca.channel(), "CA") as channel:
            yield MerchantRegistrar(
                config, backend, AuthorityClient(Caller(channel, "CA")),
                TrustStore(read_root(config.root)),
            )  # fmt: skip
    finally:
        backend.close()


def register_merchant(directory: Path, profile: Profile = EC) -> None:
    """The merchant's registration, as ``setpay merchant register`` runs it."""
    with merchant_registrar(directory) as registrar:
        done = registrar.register(profile)
        if not done.complete:
            raise ClientError("merchant registration pended")


def new_wallet(
    bank: RunningBank,
    directory: Path,
    merchant_target: str | None,
    *,
    register: bool = True,
    keys: str = "soft:keys",
    profile: Profile = EC,
) -> Wallet:
    """Configure a wallet (trusting the brand root for TLS) and register a new card."""
    copy_tls(bank, directory, ("root.pem",))
    ca = PeerConfig(bank.ca_target, directory / "tls/root.pem")
    merchant = PeerConfig(merchant_target, directory / "tls/root.pem") if merchant_target else None
    write_wallet_config(directory, ca=ca, merchant=merchant, keys=keys)
    config = load_wallet_config(directory)
    write_certificates(config.root, [bank.brand_root])
    wallet = Wallet.open(config)
    if register:
        pan, expiry = bank.new_card()
        done = wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, profile)
        assert done.complete
    return wallet
