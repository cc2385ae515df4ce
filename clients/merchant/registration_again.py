"""Whether ``register`` may run on a merchant that holds certificates: only once its
signature certificate has ended or been revoked.

A registered merchant renews (``renew``), signing the renewal under its current signature
certificate. Once that certificate has ended or been revoked, the Merchant CA refuses
such a renewal, and no peer accepts the merchant any more (``Merchant.serve`` refuses to
serve on it, advising ``registering_again``): registering again, with new keys, is then
the only way back, and the CA takes an initial registration for a merchant ID none of
whose certificates is live (``gateway.ca.merchant``), with the settlement account the ID
already holds. So ``register`` judges the newest certified signature certificate before
anything is made: ended (its notAfter past, told without asking anyone) or revoked (told
by the brand's revocation data, which ``register`` fetches anyway for its Me-AqCInit,
once) lets it register again; one neither ended nor revoked is refused as before, with
the command that renews it. ``serve`` judges a certificate it refuses the same way before
it advises.

Registering again makes new versions of both keys, whatever the key-exchange
certificate's state (the two are issued together and normally end together). The old
versions stay, certificates and all: they open the gateway's answers to requests stored
under them (``clients.merchant.registration.current_credentials``), and the new versions
displace them once their certificates are stored.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from clients.errors import RegistrationError
from clients.identity import certified_versions, read_certificates
from clients.merchant.config import MerchantConfig
from clients.merchant.registration_pending import KEY_EXCHANGE_LABEL, SIGNATURE_LABEL
from hsm.base import KeyBackend
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki.certificate import load_certificate
from setcore.pki.presented import Presented, verify_presented
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.pki.truststore import TrustStore

log = logging.getLogger("setpay.merchant")

REVOKED = ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
#: Where the command that registers again takes the settlement account id: the Merchant
#: CA registers a merchant ID that held certificates before only with it.
ACCOUNT_FILE = "FILE"


def renew_command(config: MerchantConfig) -> str:
    """The command that renews this merchant's certificates, as an operator types it."""
    return f"setpay merchant --dir {shlex.quote(str(config.base_dir))} renew"


def register_command(config: MerchantConfig) -> str:
    """The command that registers this merchant again, as an operator types it (``FILE``
    standing for the file of its settlement account id)."""
    return (
        f"setpay merchant --dir {shlex.quote(str(config.base_dir))} register "
        f"--account-file {ACCOUNT_FILE}"
    )


def registering_again(config: MerchantConfig) -> str:
    """The way back for a merchant whose signature certificate ended or was revoked."""
    return (
        "the Merchant CA refuses a renewal signed under it too: register this merchant "
        f"again, with new keys, with `{register_command(config)}`, {ACCOUNT_FILE} holding "
        "the settlement account id the bank handed out for it (the Merchant CA registers "
        "the ID again once none of its certificates is live: ended, or revoked by its "
        "operator), then start it again"
    )


def ended(der: bytes, at: datetime | None = None) -> bool:
    """True when the certificate's notAfter is past at ``at`` (default: now)."""
    return load_certificate(der).not_valid_after_utc < (at or datetime.now(UTC))


def _revoked(trust: TrustStore, der: bytes, chain: Path) -> bool:
    """True when ``trust``'s revocation data revokes the signature certificate ``der``, as
    ``serve`` judges it (``setcore.pki.presented``: held data no longer current still
    revokes what it lists), so that the two never advise each other's command."""
    presented = Presented(
        SIGNATURE_LABEL, der, read_certificates(chain), MERCHANT, CertificateUsage.SIGNATURE
    )
    try:
        verify_presented(trust, presented)
    except ProtocolError as exc:
        return exc.code == REVOKED
    return False


def check_may_register(
    config: MerchantConfig, backend: KeyBackend, trust: TrustStore, fetch: Callable[[], None]
) -> None:
    """Return when ``register`` may make new keys: the merchant holds no certificate, or
    its newest certified signature certificate has ended, or is revoked by the revocation
    data ``fetch`` installs in ``trust``; ``RegistrationError`` otherwise, naming that
    certificate and the command that renews it.

    ``fetch`` is the registration's own fetch of revocation data, called once whenever
    this returns or judges revocation: none is added. Nothing is made before.
    """
    newest = next(certified_versions(backend, SIGNATURE_LABEL), None)
    if newest is None:
        # No signature certificate: a first registration, unless a key-exchange one is
        # stored alone (no registration stores it first).
        if next(certified_versions(backend, KEY_EXCHANGE_LABEL), None) is not None:
            raise RegistrationError(
                f"{KEY_EXCHANGE_LABEL} is already certified: this merchant is registered "
                "(renew instead)"
            )
        fetch()
        return
    key, der = newest
    fetch()
    if ended(der):
        why = "ended"
    elif _revoked(trust, der, config.chain):
        why = "been revoked"
    else:
        until = load_certificate(der).not_valid_after_utc
        raise RegistrationError(
            f"{SIGNATURE_LABEL} v{key.version} is already certified, until "
            f"{until:%Y-%m-%d %H:%M} UTC, and not revoked: this merchant is registered, "
            f"renew instead (`{renew_command(config)}`); register makes new keys only "
            "once that certificate has ended or been revoked"
        )
    log.warning(
        "the signature certificate of %s v%d has %s: registering merchant %s again, with "
        "new keys (the old ones are kept, for the answers to requests made under them)",
        SIGNATURE_LABEL, key.version, why, config.merchant_id,
    )  # fmt: skip
