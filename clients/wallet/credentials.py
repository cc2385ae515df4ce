"""Which of the wallet's certified key versions signs: a purchase, or an inquiry about one.

The signature key is kept under one label in the key backend; ``setpay wallet renew``
makes a new version of it and stores the new certificate beside that version. Every
older certified version is kept: a merchant answers an inquiry only when it is signed
by the certificate that paid for the purchase (the one it recorded from the PReq), so a
purchase made before a renewal is asked about with the key that made it. Only until
that certificate expires (or is revoked): the merchant checks an inquiry's signer as of
the inquiry, not of the purchase, and refuses one signed by a certificate no longer
valid.

A purchase is signed with the newest certified version whose certificate carries the
blinded account of the card's PANSecret as the card file holds it. The certificate and
the PANSecret that goes with it are written one after the other (key backend, then card
file), so after a crash between the two the newest certificate may not be the card
file's yet: a PReq pairing them would be refused by the gateway, while the pair chosen
here always agrees, and the renewal that stored the certificate finishes on its next run.

A certificate its CA revoked signs no purchase (``refuse_if_revoked``): the gateway would
refuse its PI, after the merchant had taken the order, and the cardholder would hear only
that the order was rejected (a PRes carries no reason). The wallet checks it against the
revocation data it holds for the purchase anyway, before anything is sent; only a
revocation stops it there, as the merchant and the gateway judge the rest and say why.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from clients.errors import ClientError, ConfigError
from clients.identity import certified_versions, read_certificates
from hsm.base import KeyBackend
from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.pan import blinded_account
from setcore.pki.bci import RevocationUnavailable
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import read_blinded_account
from setcore.pki.roles import CARDHOLDER, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.purchase import CardData

log = logging.getLogger("setpay.wallet")


class CertificateRevoked(ClientError):
    """The certificate a purchase would be signed with is revoked by its CA: no purchase
    request was sent, and none can be until the card is registered again."""

    def __init__(self, thumb: bytes, masked_pan: str) -> None:
        super().__init__(
            f"the certificate {thumb.hex()[:16]} of card {masked_pan} is revoked by its "
            "Cardholder CA: no purchase request was sent; register the card again with "
            "`setpay wallet register --card CARD.json` (the file of the card the bank issued "
            "in its place, if it did)"
        )
        self.thumb = thumb


def _carries(der: bytes, card: CardData) -> bool:
    blinded = read_blinded_account(load_certificate(der))
    expected = blinded_account(card.pan_secret, card.pan, card.expiry)
    return blinded is not None and hmac.compare_digest(blinded, expected)


def card_credentials(backend: KeyBackend, label: str, chain: Path, card: CardData) -> Credentials:
    """The credentials a purchase with ``card`` is signed with (see the module docstring)."""
    for key, der in certified_versions(backend, label):
        if _carries(der, card):
            return Credentials(backend, key, der, read_certificates(chain))
    raise ConfigError(
        f"no certificate under {label!r} in the key backend is for card {card.pan.masked} "
        "as the card file holds it: is `keys` in wallet.toml the backend it was registered in?"
    )


def purchase_credentials(
    backend: KeyBackend, label: str, chain: Path, paid_with: bytes | None
) -> Credentials:
    """The credentials of the certificate a purchase was paid with (its thumbprint).

    None, for a purchase recorded before the wallet recorded it: no wallet could renew
    then, so it was paid with the first certificate, the oldest version still certified.
    """
    versions = list(certified_versions(backend, label))
    if not versions:
        raise ConfigError("the wallet holds no certificate: register first")
    if paid_with is None:
        key, der = versions[-1]
        return Credentials(backend, key, der, read_certificates(chain))
    for key, der in versions:
        if hmac.compare_digest(thumbprint(der), paid_with):
            return Credentials(backend, key, der, read_certificates(chain))
    raise ConfigError(
        f"the certificate {paid_with.hex()[:16]} that paid for this purchase is no longer "
        f"under {label!r} in the key backend: the merchant answers only to it"
    )


def refuse_if_revoked(credentials: Credentials, trust: TrustStore, masked_pan: str) -> None:
    """``CertificateRevoked`` when the revocation data ``trust`` holds lists the signing
    certificate of ``credentials`` as revoked (or a CA above it: the same refusal).

    ``RevocationUnavailable`` (no current data, or none for its CA) is raised for the
    caller to fetch the data again; any other failure of the chain is left to the merchant
    and the gateway, whose signed refusal says what it is.
    """
    try:
        trust.verify_chain(
            credentials.signature_cert, credentials.chain, CARDHOLDER, CertificateUsage.SIGNATURE
        )
    except RevocationUnavailable:
        raise
    except ProtocolError as exc:
        if exc.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE:
            raise CertificateRevoked(credentials.signature_thumb, masked_pan) from exc
        log.info("the card's certificate does not verify here (%s): the merchant judges it", exc)
