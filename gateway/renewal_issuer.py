"""Whether the Payment Gateway CA can certify a renewal of the gateway's keys
(``gateway.gateway_renewal``), and whether, in its last day, renewing gains anything.

Both checks run before the renewal makes any key or certificate, and refuse it with a
``ProvisioningError`` that ends "nothing was renewed". The certificates a renewal issues
end with their issuer (``setcore.pki.issuance``), and nothing renews the CA itself
(CHANGELOG.md, "Known limitations"): in the CA's last day a renewal runs only when it
gains something, and says what.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from gateway.bank_pki import (
    CA_LABELS,
    CERT_SUFFIX,
    BankPki,
    ProvisioningError,
    open_ca_store,
    unused_gateway_certificates,
)
from gateway.bank_presented import gateway_ends, renewing_gains
from gateway.config import BankConfig
from setcore.errors import ProtocolError
from setcore.pki.issuance import IssuingCA
from setcore.pki.presented import Presented, verify_presented
from setcore.pki.roles import PAYMENT_GATEWAY_CA, CertificateUsage

log = logging.getLogger("setpay.provisioning")

# The least a renewal must leave of the Payment Gateway CA's life while the gateway's
# certificates stand until its end (``check_issuer_lasts``): the ones it issues end with
# their issuer, and nothing renews the CA itself.
ISSUER_MUST_LAST = timedelta(days=1)


def check_issuer_stands(pki: BankPki, pca: IssuingCA, when: datetime) -> None:
    """Refuse a renewal whose Payment Gateway CA's certificate peers refuse at ``when``,
    judged as the bank's start judges it (``setcore.pki.presented``, with the revocation
    data held). Past the CA's end, issuing refused an empty window once two key versions
    were made; in the ``CLOCK_SKEW`` after it, and under a revoked CA, the renewal
    installed certificates no peer accepts. A ``when`` before the CA begins is this host's
    clock behind: the remedy is the clock."""
    begins, ends = pca.certificate.not_valid_before_utc, pca.certificate.not_valid_after_utc
    if when < begins:
        raise ProvisioningError(
            f"the Payment Gateway CA's certificate begins at {begins:%Y-%m-%d %H:%M:%S} UTC,"
            f" after the renewal's time, {when:%Y-%m-%d %H:%M:%S} UTC: this host's clock is"
            " behind; set it right, then renew; nothing was renewed"
        )
    if ends <= when:
        raise ProvisioningError(
            f"the Payment Gateway CA's certificate ended at {ends:%Y-%m-%d %H:%M:%S} UTC:"
            " it certifies no new key of the gateway, and a CA cannot be renewed; nothing"
            " was renewed"
        )
    presented = Presented(
        f"{CA_LABELS[PAYMENT_GATEWAY_CA]}{CERT_SUFFIX}", pki.pca.signature_cert, (),
        PAYMENT_GATEWAY_CA, CertificateUsage.SIGNATURE,
    )  # fmt: skip
    try:
        verify_presented(pki.trust, presented, when)
    except ProtocolError as exc:
        raise ProvisioningError(
            f"the Payment Gateway CA's certificate no longer stands ({exc}): no peer accepts"
            " a certificate it issues, and a CA cannot be renewed; nothing was renewed"
        ) from exc


def check_issuer_lasts(config: BankConfig, pki: BankPki, pca: IssuingCA, when: datetime) -> None:
    """Refuse a renewal within ``ISSUER_MUST_LAST`` of the Payment Gateway CA's end while
    it gains nothing: the gateway's certificates stand until that end (renewed ones end
    with their issuer), and ca.db records none of theirs that no file holds. Else it runs,
    warning how much it gains: it mends a bank whose start says to renew
    (``gateway.bank_presented``) for the hours the CA has left, or finishes a renewal
    that stopped between its renames (the stray certificate it recorded is revoked first:
    refused, it stayed live, and the message that says to run the renewal again was
    untrue). A host whose clock is behind the gateway's certificates is refused."""
    ends = pca.certificate.not_valid_after_utc
    if ends - when >= ISSUER_MUST_LAST:
        return
    left = int((ends - when).total_seconds() // 60)
    in_words = f"{ends:%Y-%m-%d %H:%M:%S} UTC, in {left // 60} h {left % 60} min"
    gains = renewing_gains(pki.trust, pki.gateway, ends, when) or _unheld(config, pki, when)
    if gains is None:
        raise ProvisioningError(
            f"the Payment Gateway CA's certificate ends at {in_words}: the gateway's"
            " certificates never outlive it, so renewed ones would end then too, as the"
            " current ones (which still stand) do, and a CA cannot be renewed; a renewal"
            f" needs at least {ISSUER_MUST_LAST.days} day of the CA's life left while they"
            " stand until its end; nothing was renewed"
        )
    current = gateway_ends(pki.gateway)
    gained = (
        f"the gateway's certificates' end moves from {current:%Y-%m-%d %H:%M:%S} UTC to"
        f" {ends:%Y-%m-%d %H:%M:%S} UTC, the CA's end"
        if current < ends
        else f"the gateway's certificates still end at {ends:%Y-%m-%d %H:%M:%S} UTC, the CA's end"
    )
    log.warning(
        "renewing the gateway's keys although the Payment Gateway CA's certificate ends at"
        " %s, since %s: %s, and a CA cannot be renewed",
        in_words, gains, gained,
    )  # fmt: skip


def _unheld(config: BankConfig, pki: BankPki, when: datetime) -> str | None:
    """What a renewal gains by revoking the certificates ca.db records that no file holds
    (``unused_gateway_certificates``, as the renewal revokes them); None if none."""
    store = open_ca_store(config)
    try:
        unheld = unused_gateway_certificates(store, pki, when)
    finally:
        store.close()
    if not unheld:
        return None
    return (
        f"ca.db records {len(unheld)} live certificate(s) of the gateway's keys that no file"
        " holds (a renewal that did not finish), which this one revokes"
    )
