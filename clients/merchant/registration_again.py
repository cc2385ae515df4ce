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

The CA's test is every certificate it issued to the ID, the key-exchange one and the
versions kept after a renewal too (a renewal revokes nothing): an operator revoking only
the signature certificate (a leaked signature key) leaves the others live, and the CA
then refuses the registration with a bare REJECTED_BY_AGENT after new keys were made. So
with the newest signature certificate ended or revoked, ``register`` judges every other
certified version of either key with the same data, and refuses while one is live
(``still_live``), before any key is made or any Me-AqCInit sent, naming each and the
acquirer's ``setpay ca revoke`` that frees the ID (``revoke_first``); ``serve`` advises
the same. One that a peer would refuse for another reason (no path to the brand, say) is
not counted: once revoked it would be refused all the same, so counting it could never
end, and the CA's refusal is left to tell.

Each certificate is judged once, with the chain file read once: the newest signature
certificate, found ended or revoked, is not live, and is not judged again.

"Ended" is the Merchant CA's judgement, which is by its own clock: it counts a
certificate live until its notAfter (``holds_live_certificate``), and the protocol lets
two clocks be up to ``CLOCK_SKEW`` apart (``setcore.pki.issuance``, ``setcore.freshness``).
A certificate whose notAfter passed less than that ago here may still be live there, and
a merchant registering then made new keys only to hear REJECTED_BY_AGENT. So ``register``
and ``still_live`` count one unrevoked as live until its notAfter plus ``CLOCK_SKEW``
(``live_until``), and ``register`` refuses until then, before anything is made, naming
that moment; ``serve``'s advice names it too. ``serve``'s own judgement of its
certificates stays its peers', by its clock: it serves on none whose notAfter is past.

Registering again makes new versions of both keys. The old versions stay, certificates
and all: they open the gateway's answers to requests stored under them
(``clients.merchant.registration.current_credentials``), and the new versions displace
them once their certificates are stored.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime

from clients.errors import RegistrationError
from clients.identity import certified_versions, read_certificates
from clients.merchant.config import MerchantConfig
from clients.merchant.registration_pending import KEY_EXCHANGE_LABEL, SIGNATURE_LABEL
from hsm.base import KeyBackend, KeyHandle
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import CLOCK_SKEW
from setcore.pki.presented import Presented, verify_presented
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.pki.truststore import TrustStore

log = logging.getLogger("setpay.merchant")

REVOKED = ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
#: Where the command that registers again takes the settlement account id: the Merchant
#: CA registers a merchant ID that held certificates before only with it.
ACCOUNT_FILE = "FILE"
#: Where the acquirer's ``setpay ca revoke`` takes the bank's configuration, which the
#: merchant does not know.
BANK_CONFIG = "BANK_CONFIG"
#: A moment a refusal names, to the second: the tolerance is minutes long.
MOMENT = "%Y-%m-%d %H:%M:%S"
#: The tolerance between two clocks, as a refusal words it.
TOLERANCE = f"{CLOCK_SKEW.total_seconds() / 60:g} minutes"


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


def revoke_command(der: bytes) -> str:
    """The acquirer's command that revokes the certificate ``der``, as its operator types
    it (``BANK_CONFIG`` standing for the bank's setpay.toml): by SHA-256 thumbprint in
    colon-hex, as ``setpay ca list`` prints it, which names one certificate of all the
    brand's CAs (a serial names one of its issuer's only)."""
    thumb = ":".join(f"{byte:02X}" for byte in thumbprint(der))
    return f"setpay ca revoke --config {BANK_CONFIG} --thumb {thumb}"


def revoke_first(live: Sequence[tuple[KeyHandle, bytes]]) -> str:
    """Why the Merchant CA would refuse to register this merchant again while the
    certificates ``live`` (``still_live``) are, and what frees the ID."""
    named = "; ".join(
        f"{key.label} v{key.version} (certificate {thumbprint(der).hex()[:8]}, until "
        f"{load_certificate(der).not_valid_after_utc:%Y-%m-%d %H:%M} UTC: "
        f"`{revoke_command(der)}`)"
        for key, der in live
    )
    return (
        "the Merchant CA registers this merchant ID again only once none of its "
        f"certificates is live, and these have neither ended nor been revoked: {named}; "
        f"ask the acquirer to revoke each, {BANK_CONFIG} being the bank's setpay.toml"
    )


def registering_again(
    config: MerchantConfig, live: Sequence[tuple[KeyHandle, bytes]], at: datetime
) -> str:
    """The way back for a merchant whose signature certificate ended or was revoked:
    first, while some of its certificates are still ``live`` (``still_live``) at ``at``,
    the revocations that let the Merchant CA take the registration (``register`` refuses
    before them), then registering again, once those that ended less than ``CLOCK_SKEW``
    ago have ended by the Merchant CA's clock too (``register`` refuses before that as
    well). ``at`` is the moment ``live`` was judged at: judged at another, a certificate
    ending between the two would be advised both ways."""
    blocking, ending = _split(live, at)
    register = (
        f"register this merchant again, with new keys, with `{register_command(config)}`, "
        f"{ACCOUNT_FILE} holding the settlement account id the bank handed out for it"
    )
    if ending:
        after, wait = _wait_for(ending)
        register = f"{register}, after {after:{MOMENT}} UTC ({wait})"
    if blocking:
        return (
            f"the Merchant CA refuses a renewal signed under it too; "
            f"{revoke_first(blocking)}; then {register}, then start it again"
        )
    if ending:
        return (
            f"the Merchant CA refuses a renewal signed under it too: {register}, then start "
            "it again"
        )
    return (
        f"the Merchant CA refuses a renewal signed under it too: {register} (the Merchant "
        "CA registers the ID again once none of its certificates is live: ended, or "
        "revoked by its operator), then start it again"
    )


def ended(der: bytes, at: datetime | None = None) -> bool:
    """True when the certificate's notAfter is past at ``at`` (default: now), by this
    clock: as a peer judges it (``serve``); the Merchant CA may not yet (``live_until``)."""
    return load_certificate(der).not_valid_after_utc < (at or datetime.now(UTC))


def live_until(der: bytes) -> datetime:
    """The last moment, by this clock, at which the Merchant CA may still count the
    certificate ``der`` live, unrevoked: its notAfter, by the CA's clock, which may be up
    to ``CLOCK_SKEW`` behind this one."""
    return load_certificate(der).not_valid_after_utc + CLOCK_SKEW


def _split(
    live: Sequence[tuple[KeyHandle, bytes]], at: datetime
) -> tuple[list[tuple[KeyHandle, bytes]], list[tuple[KeyHandle, bytes]]]:
    """The certificates ``live`` (``still_live``) not ended at ``at``, which only a
    revocation frees, and those ended less than ``CLOCK_SKEW`` before, which time frees."""
    blocking = [(key, der) for key, der in live if not ended(der, at)]
    return blocking, [(key, der) for key, der in live if ended(der, at)]


def _wait_for(ending: Sequence[tuple[KeyHandle, bytes]]) -> tuple[datetime, str]:
    """When the certificates ``ending`` (ended here less than ``CLOCK_SKEW`` ago) have
    ended by the Merchant CA's clock too, and why that is waited for."""
    after = max(live_until(der) for _, der in ending)
    named = " and ".join(
        f"{key.label} v{key.version} (certificate {thumbprint(der).hex()[:8]}, ended "
        f"{load_certificate(der).not_valid_after_utc:{MOMENT}} UTC)"
        for key, der in ending
    )
    return after, (
        "the Merchant CA judges whether a certificate has ended by its own clock, which "
        f"may be up to {TOLERANCE} behind this one: it may count {named} live until "
        f"{after:{MOMENT}} UTC, and refuse the registration"
    )


def _revoked(
    trust: TrustStore, der: bytes, chain: tuple[bytes, ...], at: datetime | None = None
) -> bool:
    """True when ``trust``'s revocation data revokes the signature certificate ``der``
    (its CA certificates ``chain``) at ``at`` (default: now), as ``serve`` judges it
    (``setcore.pki.presented``: held data no longer current still revokes what it lists),
    so that the two never advise each other's command."""
    presented = Presented(SIGNATURE_LABEL, der, chain, MERCHANT, CertificateUsage.SIGNATURE)
    try:
        verify_presented(trust, presented, at)
    except ProtocolError as exc:
        return exc.code == REVOKED
    return False


def still_live(
    trust: TrustStore,
    backend: KeyBackend,
    chain: tuple[bytes, ...],
    at: datetime | None = None,
    *,
    not_live: Collection[bytes] = (),
) -> list[tuple[KeyHandle, bytes]]:
    """Every certified version of either key, newest first, whose certificate the
    Merchant CA may count as live at ``at`` (default: now): one a peer accepts, judged with
    ``trust``'s revocation data as ``serve`` judges (``setcore.pki.presented``), and one
    that ended less than ``CLOCK_SKEW`` ago, judged so at its notAfter (``live_until``: the
    CA's clock may be that far behind). Revoked ones are not, nor ones ended before; nor
    one refused for another reason, which a revocation would not change. The certificates
    ``not_live``, judged so by the caller already, are not judged again."""
    now = at or datetime.now(UTC)
    live = []
    for label, usage in (
        (SIGNATURE_LABEL, CertificateUsage.SIGNATURE),
        (KEY_EXCHANGE_LABEL, CertificateUsage.KEY_EXCHANGE),
    ):
        for key, der in certified_versions(backend, label):
            if der in not_live or live_until(der) < now:
                continue
            presented = Presented(label, der, chain, MERCHANT, usage)
            try:
                # At its notAfter, one ended less than CLOCK_SKEW ago: revoked or not.
                verify_presented(
                    trust, presented, min(now, load_certificate(der).not_valid_after_utc)
                )
            except ProtocolError:
                continue
            live.append((key, der))
    return live


def check_may_register(
    config: MerchantConfig, backend: KeyBackend, trust: TrustStore, fetch: Callable[[], None]
) -> None:
    """Return when ``register`` may make new keys: the merchant holds no certificate, or
    its newest certified signature certificate has ended more than ``CLOCK_SKEW`` ago, or
    is revoked by the revocation data ``fetch`` installs in ``trust``, and no other
    certified version of either key is still live (``still_live``); ``RegistrationError``
    otherwise: renew, while the newest signature certificate has not ended; else have the
    acquirer revoke each certificate ``revoke_first`` names, and wait until those ended
    less than ``CLOCK_SKEW`` ago have ended by the Merchant CA's clock too (``live_until``;
    else the Merchant CA would refuse the request).

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
    # Read once, for this judgement and still_live's.
    chain = read_certificates(config.chain)
    now = datetime.now(UTC)
    until = load_certificate(der).not_valid_after_utc
    # Judged at its notAfter when that passed less than CLOCK_SKEW ago: still live to the
    # Merchant CA unless revoked (``live_until``).
    waited: list[tuple[KeyHandle, bytes]] = []
    if live_until(der) < now:
        why = "ended"
    elif _revoked(trust, der, chain, min(now, until)):
        why = "been revoked"
    elif ended(der, now):
        why, waited = "ended", [(key, der)]
    else:
        raise RegistrationError(
            f"{SIGNATURE_LABEL} v{key.version} is already certified, until "
            f"{until:%Y-%m-%d %H:%M} UTC, and not revoked: this merchant is registered, "
            f"renew instead (`{renew_command(config)}`); register makes new keys only "
            "once that certificate has ended or been revoked"
        )
    # Ended or revoked, the newest is not judged again (one ended less than CLOCK_SKEW
    # ago, unrevoked, is waited for): every other is judged, once.
    live = [*waited, *still_live(trust, backend, chain, now, not_live=(der,))]
    blocking, ending = _split(live, now)
    after, wait = _wait_for(ending) if ending else (None, "")
    if blocking:
        then = "" if after is None else f", after {after:{MOMENT}} UTC ({wait})"
        raise RegistrationError(
            f"{SIGNATURE_LABEL} v{key.version} has {why}, but {revoke_first(blocking)}; "
            f"then run this register command again{then} (no keys were made)"
        )
    if after is not None:
        raise RegistrationError(
            f"{SIGNATURE_LABEL} v{key.version} has {why}, but {wait}; run this register "
            f"command again after {after:{MOMENT}} UTC (no keys were made)"
        )
    log.warning(
        "the signature certificate of %s v%d has %s: registering merchant %s again, with "
        "new keys (the old ones are kept, for the answers to requests made under them)",
        SIGNATURE_LABEL, key.version, why, config.merchant_id,
    )  # fmt: skip
