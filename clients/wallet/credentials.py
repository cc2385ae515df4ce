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
"""

from __future__ import annotations

import hmac
from pathlib import Path

from clients.errors import ConfigError
from clients.identity import certified_versions, read_certificates
from hsm.base import KeyBackend
from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.pan import blinded_account
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import read_blinded_account
from setcore.purchase import CardData


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
