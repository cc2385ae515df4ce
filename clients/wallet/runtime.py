"""The wallet put together: key backend, trust store, revocation feed, CA channel, card.

``Wallet.open(config)`` opens the key backend and the pinned root; the card is opened
only when a command needs it, with the passphrase, and never kept on disk in clear.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

import grpc

from clients.authority import AuthorityClient
from clients.errors import ConfigError
from clients.identity import read_root
from clients.revocation import RevocationFeed
from clients.transport import Caller, open_channel
from clients.wallet.config import WalletConfig
from clients.wallet.credentials import card_credentials, purchase_credentials
from clients.wallet.pending import request_unanswered
from clients.wallet.purchases import PurchaseBook, Shopper
from clients.wallet.registration import CardholderRegistrar
from clients.wallet.vault import CardSecrets, open_vault
from hsm.base import KeyBackend
from hsm.uri import describe_uri, open_backend
from setcore.encoding import thumbprint
from setcore.pki.certificate import load_certificate
from setcore.pki.truststore import TrustStore

log = logging.getLogger("setpay.wallet")


@dataclass(frozen=True)
class WalletSummary:
    """What ``setpay wallet show`` prints: the masked card and the certificate, no secret."""

    masked_pan: str
    expiry: str
    registered: bool
    #: A certificate request sent whose answer never came or did not verify (``sent``),
    #: or one the CA answered "pended" (``pended``); "" when none is held.
    pending: str
    certificate_thumb: str = ""
    certificate_subject: str = ""
    certificate_not_after: datetime | None = None
    purchases: int = 0


# What ``WalletSummary.pending`` says of a held certificate request.
PENDING_SENT = "sent"
PENDING_PENDED = "pended"


def _pending_state(held: CardSecrets) -> str:
    if not held.pending:
        return ""
    return PENDING_SENT if request_unanswered(held) else PENDING_PENDED


@dataclass
class Wallet:
    """An opened wallet."""

    config: WalletConfig
    backend: KeyBackend
    trust: TrustStore
    _channels: list[grpc.Channel] = field(default_factory=list)
    _authority: AuthorityClient | None = None
    _revocation: RevocationFeed | None = None

    @classmethod
    def open(cls, config: WalletConfig, backend: KeyBackend | None = None) -> Wallet:
        """Open the key backend and the pinned root (no network call yet)."""
        if backend is None:
            log.info("wallet keys in %s", describe_uri(config.keys_uri()))
            backend = open_backend(config.keys_uri())
        return cls(config, backend, TrustStore(read_root(config.root)))

    @property
    def authority(self) -> AuthorityClient:
        """The Cardholder CA client (channel opened on first use)."""
        if self._authority is None:
            channel = open_channel(self.config.require_ca().channel(), "CA")
            self._channels.append(channel)
            self._authority = AuthorityClient(Caller(channel, "CA"))
        return self._authority

    @property
    def revocation(self) -> RevocationFeed:
        """The feed keeping the trust store's revocation data current."""
        if self._revocation is None:
            authority, brand = self.authority, self.config.brand_id
            self._revocation = RevocationFeed(self.trust, lambda: authority.revocation(brand))
        return self._revocation

    def card(self, passphrase: str) -> CardSecrets:
        """The sealed card, opened."""
        return open_vault(self.config.card_file, passphrase)

    def registrar(self, passphrase: str) -> CardholderRegistrar:
        """Registration and renewal with the Cardholder CA."""
        return CardholderRegistrar(
            self.config, self.backend, self.authority, self.trust, passphrase
        )

    def shopper(self, passphrase: str, *, inquiring: str | None = None) -> Shopper:
        """Purchases with the registered card, signed by its current certificate; with
        ``inquiring`` (the start of an XID), inquiries signed by the certificate that paid
        for that purchase (``clients.wallet.credentials``)."""
        card = self.card(passphrase).card()
        book = PurchaseBook(self.config.purchases_file)
        config = self.config
        if inquiring is None:
            credentials = card_credentials(self.backend, config.key_label, config.chain, card)
        else:
            paid_with = book.find(inquiring).cardholder_thumb
            credentials = purchase_credentials(
                self.backend, config.key_label, config.chain,
                bytes.fromhex(paid_with) if paid_with else None,
            )  # fmt: skip
        self.trust.add_certificates(credentials.chain)
        return Shopper(
            credentials, card, self.trust, self.revocation, book, config.brand_id,
            config.language,
        )  # fmt: skip

    def summary(self, passphrase: str) -> WalletSummary:
        """The masked card, its registration state and certificate."""
        held = self.card(passphrase)
        purchases = len(PurchaseBook(self.config.purchases_file).all())
        summary = WalletSummary(
            held.pan.masked, held.expiry, held.pan_secret is not None, _pending_state(held),
            purchases=purchases,
        )  # fmt: skip
        if held.pan_secret is None:
            return summary
        config = self.config
        try:
            current = card_credentials(self.backend, config.key_label, config.chain, held.card())
        except ConfigError:
            return summary  # the key backend holds no certificate for this card
        der = current.signature_cert
        cert = load_certificate(der)
        return replace(
            summary, certificate_thumb=thumbprint(der).hex()[:16],
            certificate_subject=cert.subject.rfc4514_string(),
            certificate_not_after=cert.not_valid_after_utc,
        )  # fmt: skip

    def close(self) -> None:
        """Close channels and the key backend."""
        for channel in self._channels:
            channel.close()
        self.backend.close()
