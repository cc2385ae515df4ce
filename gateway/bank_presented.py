"""The certificates a bank presents, judged at start as its peers judge them.

``gateway.bank_pki.load_bank_pki`` calls ``check_presented`` once its revocation data is
installed: each certificate below is validated in the bank's own trust store, with the
certificate type and usage a peer requires (``setcore.pki.presented``), and one no peer
accepts stops the start (``BankIncomplete``), naming its file, the peer's reason and what
to do:

- the gateway's signature and key-exchange certificates (``gateway-sig.der``,
  ``gateway-kex.der``): every merchant verifies the first on each answer and seals to the
  second. Renewing the gateway's keys (``setpay ca renew-gateway``) mends any of it, and
  runs on such a bank: a renewal (the remedy, which rewrites what is judged) or a
  pruning loads the bank without this judgement (``judge_presented`` False), as the CA's
  commands do, which manage the bank rather than serve. In the Payment Gateway CA's last
  day too: there a renewal refuses only to replace certificates that still stand until
  the CA's end (``renewing_gains``), never such a bank's, unless they begin after this
  host's clock (this host's clock behind, or the renewing host's ahead: the refusal
  names both, and what to do for each);
- each CA's certificate and key-exchange certificate (``cca.der``, ``cca-kex.der``, ...):
  one that does not chain to the brand root, or is of another type or usage, was not
  issued to this key by this brand; put back the one the brand root issued. One that has
  ended or been revoked does not stop the bank: that CA alone then answers no
  registration (``gateway.ca.standing``), as before, since no setpay command re-issues a
  CA's certificates yet, and a bank of an earlier release has CA key-exchange
  certificates that end a year after ``setpay init``. It is logged. If it is the Payment
  Gateway CA's signature certificate (``pca.der``), the gateway's own chain fails with
  it, and the refusal says that renewing does not help; its key-exchange certificate
  (``pca-kex.der``) is in no chain of the gateway's, so a gateway certificate refused
  beside it is still mended by renewing.

Not judged: the older gateway key-exchange certificates a renewal kept
(``gateway-kex.vN.der``). They are no longer handed to peers (PCertRes names the newest);
they only open what was sealed to them while they were current, and one revoked since is
refused envelope by envelope (``gateway.opening_keys``), as one that ended is (its key
opens only the answer to a decision left unanswered: ``gateway.older_key_exchange``).

A certificate that ends soon is not refused: the bank warns of it (``_warn_ending``, the
gauges). Once per worker start of a starting bank (a worker that replaces one that died
while the bank served is not judged: ``gateway.process``), never per request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.bank_errors import BankIncomplete, ProvisioningError
from gateway.config import BankConfig, config_option
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki import roles
from setcore.pki.certificate import load_certificate
from setcore.pki.presented import Presented, verify_presented
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore

log = logging.getLogger("setpay.bank")

_CA_RESTORE = (
    "put back the certificate the brand root issued for this key (from the bank's backup): "
    "no setpay command re-issues a CA's certificates yet"
)
_PCA_GONE = (
    "the Payment Gateway CA's own certificate no longer stands (see its line above), and "
    "renewing the gateway's keys does not help while it does not: no setpay command "
    "re-issues a CA's certificates yet"
)


def renew_gateway_command(config: BankConfig) -> str:
    """The command that renews the gateway's keys of the bank ``config`` names, as an
    operator types it (``setpay ca renew-gateway``)."""
    return f"setpay ca renew-gateway {config_option(config)}"


def check_presented(
    config: BankConfig,
    trust: TrustStore,
    cas: Mapping[int, Credentials],
    gateway: Credentials,
    at: datetime | None = None,
) -> None:
    """``BankIncomplete`` for the first certificate a peer of the bank would refuse: a
    CA's (``cas``: by the CA type its peers require) for any reason but its end or its
    revocation, the gateway's for any reason."""
    when = at or datetime.now(UTC)
    gone: set[int] = set()
    for ca_type, ca in cas.items():
        for presented in _presented(ca, ca_type, (), (ca.signature_cert,)):
            try:
                verify_presented(trust, presented, when)
            except ProtocolError as exc:
                if not _no_longer_stands(presented, exc, when):
                    raise _refused(presented, exc, _CA_RESTORE) from exc
                log.warning("%s: no peer accepts it any longer (%s)", presented.name, exc)
                if presented.usage is CertificateUsage.SIGNATURE:
                    gone.add(ca_type)  # it signs its certificates: the kex one signs none
    remedy = (
        _PCA_GONE
        if roles.PAYMENT_GATEWAY_CA in gone
        else f"renew the gateway's keys with `{renew_gateway_command(config)}` (the bank "
        "stopped), then start it"
    )
    refused = refused_gateway(trust, gateway, when)
    if refused is not None:
        presented, refusal = refused
        raise _refused(presented, refusal, remedy) from refusal


def renewing_gains(
    trust: TrustStore, gateway: Credentials, issuer_ends: datetime, at: datetime
) -> str | None:
    """Why renewing the gateway's certificates (``gateway``) at ``at`` gains something
    when the renewed ones would end at ``issuer_ends`` (their issuer's end); None when it
    gains nothing: peers accept the current ones at ``at``, and both last until then.

    Asked by a renewal within the Payment Gateway CA's last day
    (``gateway.renewal_issuer``): a bank whose start refuses its gateway certificates is
    told to renew (``check_presented``), and is mended so for the hours the CA has left.
    A certificate refused because it begins after ``at`` is this host's clock behind (a
    renewal on another host, whose clock is right), or the renewal that made it ran on a
    host whose clock was ahead; from here the two cannot be told apart:
    ``ProvisioningError``, naming both and what to do for each, since renewing would
    replace, at a clock peers may not share, certificates that stand for them."""
    refused = refused_gateway(trust, gateway, at)
    if refused is not None:
        presented, refusal = refused
        begins = load_certificate(presented.der).not_valid_before_utc
        if at < begins:
            raise ProvisioningError(
                f"{presented.name} begins at {begins:%Y-%m-%d %H:%M:%S} UTC, after the"
                f" renewal's time, {at:%Y-%m-%d %H:%M:%S} UTC: either this host's clock is"
                " behind, or the renewal that made it ran on a host whose clock was ahead."
                " If this host's clock is behind, set it right, then renew. If it is right,"
                " peers with right clocks refuse the certificate until then too, and in the"
                " Payment Gateway CA's last day a renewal does not replace it: start the"
                f" bank once it has begun ({begins:%Y-%m-%d %H:%M:%S} UTC), and set the"
                " clock of the host that renewed right; nothing was renewed"
            )
        return f"{presented.name} is refused by peers ({refusal})"
    current_ends = gateway_ends(gateway)
    if current_ends < issuer_ends:
        return f"the current certificates end at {current_ends:%Y-%m-%d %H:%M:%S} UTC, before it"
    return None


def gateway_ends(gateway: Credentials) -> datetime:
    """When the first of the gateway's signature and key-exchange certificates ends (after
    a renewal that stopped between its renames, they end at different times)."""
    ders = (gateway.signature_cert, gateway.key_exchange_cert)
    return min(load_certificate(der).not_valid_after_utc for der in ders if der)


def refused_gateway(
    trust: TrustStore, gateway: Credentials, at: datetime
) -> tuple[Presented, ProtocolError] | None:
    """The first of the gateway's own certificates (``gateway``) a peer refuses at
    ``at``, with its refusal; None when peers accept both."""
    chain = gateway.chain
    for presented in _presented(gateway, roles.PAYMENT_GATEWAY, chain, chain):
        try:
            verify_presented(trust, presented, at)
        except ProtocolError as exc:
            return presented, exc
    return None


def _presented(
    party: Credentials,
    certificate_type: int,
    signature_chain: tuple[bytes, ...],
    key_exchange_chain: tuple[bytes, ...],
) -> list[Presented]:
    """A party's signature and key-exchange certificates, named by their files (a
    certificate is kept as its key's label with ``.der``). ``load_bank_pki`` refuses a
    bank without either file before it judges; a party without a key-exchange
    certificate is refused here all the same, never judged on half of what it presents."""
    kex_key, kex_der = party.key_exchange_key, party.key_exchange_cert
    if kex_key is None or kex_der is None:
        raise BankIncomplete(f"{party.signature_key.label}: no key-exchange certificate")
    return [
        Presented(f"{party.signature_key.label}.der", party.signature_cert, signature_chain,
                  certificate_type, CertificateUsage.SIGNATURE),
        Presented(f"{kex_key.label}.der", kex_der, key_exchange_chain, certificate_type,
                  CertificateUsage.KEY_EXCHANGE),
    ]  # fmt: skip


def _no_longer_stands(presented: Presented, exc: ProtocolError, at: datetime) -> bool:
    """Whether a CA certificate's refusal is its revocation or its end (or its CA's).
    Not one that is not valid yet: peers with right clocks accept it, but this host's
    clock, the one peers on this host would use too, says it has not begun, so it is
    refused here, and the remedy is that clock, not the certificate."""
    if exc.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE:
        return True
    if exc.code != ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE:
        return False
    ends = (load_certificate(der).not_valid_after_utc for der in (presented.der, *presented.chain))
    return min(ends) < at


def _refused(presented: Presented, exc: ProtocolError, remedy: str) -> BankIncomplete:
    return BankIncomplete(
        f"{presented.name}: no peer accepts this certificate ({exc}), so the bank does not "
        f"start on it: {remedy}"
    )
