"""The gateway certificates the merchant names in PInitRes and seals its requests to.

``GatewayKeys`` keeps the gateway's certificates from PCertRes: fetched at start, again
after ``GATEWAY_CERTIFICATES_TTL``, when the key-exchange certificate nears its end, or
as soon as the merchant's trust store no longer accepts them (revoked, say, after the
bank renewed the gateway's keys for a compromised one): a revoked certificate kept for
the rest of the hour would have every wallet refuse the PInitRes naming it and the
gateway refuse every AuthReq sealed to it (WRONG_RECIPIENT, final), every purchase
failing. Those it refused are forgotten.

A fetch that failed stands for the uses after it until the next fetch. The gateway's own
word on the PCertReq (``held_off``: its SET Error, a PCertRes that does not verify or
names another gateway, or one that serves no certificate for the brand) is asked for
again after a hold-off, 5 s doubling to a minute: asking sooner would only have it say
the same. Anything else is asked again at the next use, as any request to the gateway
is: the gateway unreachable, or the merchant's own side failing (its key backend signing
the PCertReq, its database, its revocation data past its window to judge the PCertRes
by). Those say nothing of the gateway and may clear a moment later: held off, one such
hiccup at the hourly fetch failed every PInit for up to a minute. Revocation data that
cannot judge the gateway's answer is not asked with again (``JudgedFetch``): sent
regardless, a PCertReq would go out at every use until the feed installs other data.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clients.errors import ConfigError, TransportError
from setcore.enum_names import code_name
from setcore.envelope import Recipient
from setcore.errors import PeerError, ProtocolError
from setcore.gateway_admin import SUCCESS, GatewayCertificate
from setcore.pki.bci import RevocationSnapshot, RevocationUnavailable
from setcore.pki.issuance import utc
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setpay.v1 import gateway_admin_pb2

log = logging.getLogger("setpay.merchant.gateway")

# Gateway certificates are asked for again after this long, so a gateway key rotation
# reaches PInitRes within the hour.
GATEWAY_CERTIFICATES_TTL = timedelta(hours=1)
# After the gateway's word refused a PCertReq (a revoked certificate served, say), the
# next PCertReq waits this long, doubled after each further refusal up to the most: uses
# meanwhile raise it again.
FETCH_HOLD_OFF_SECONDS = 5.0
FETCH_HOLD_OFF_MAX = 60.0  # seconds


class NotServed(ConfigError):
    """The gateway's PCertRes serves no certificate for the brand asked for: its word."""


@dataclass(frozen=True)
class ServedCertificates:
    """The gateway's verified certificates for a brand it serves: the key-exchange one
    named in PInitRes and sealed to, the signature one its answers are checked against,
    and the CA certificates between the key-exchange one and the brand root."""

    key_exchange: VerifiedCertificate
    signature: VerifiedCertificate
    chain: tuple[bytes, ...]


def served(item: GatewayCertificate) -> ServedCertificates:
    """A PCertRes item's certificates; ``NotServed`` if it serves none for its brand."""
    key_exchange, signature = item.key_exchange, item.signature
    if item.code != SUCCESS or key_exchange is None or signature is None:
        name = code_name(gateway_admin_pb2.PCertCode, item.code)
        raise NotServed(f"the gateway serves no certificate for brand {item.brand_id}: {name}")
    return ServedCertificates(key_exchange, signature, item.chain)


def held_off(failure: Exception) -> bool:
    """Whether a failed fetch was the gateway's word on the PCertReq, asked for again only
    after a hold-off: its SET Error, a PCertRes that does not verify (a revoked
    certificate) or that names another gateway, one that serves no certificate. Not the
    merchant's revocation data too old to judge by (``RevocationUnavailable``), nor any
    other failure: an unreachable gateway, the merchant's key backend or database."""
    if isinstance(failure, RevocationUnavailable):
        return False
    return isinstance(failure, PeerError | ProtocolError | NotServed)


def revocation_current(trust: TrustStore, at: datetime | None = None) -> None:
    """Raise ``RevocationUnavailable`` unless the trust store's revocation data covers
    ``at`` (now): a PCertRes would be judged by it and refused, so no PCertReq is sent.

    The first check the chain code makes of a store that requires revocation, as the
    merchant's does, made before sending rather than after: a BCI past its window (the CA
    unreachable) then costs no PCertReq at all. Whatever else that code cannot judge by
    (a CRL past its nextUpdate, a BCI omitting the gateway's CA) is learnt from its
    verdict on an answer (``JudgedFetch``)."""
    snapshot = trust.revocation
    if snapshot is None:
        raise RevocationUnavailable("no BrandCRLIdentifier loaded: the PCertReq is not sent")
    if not snapshot.covers(utc(at)):
        raise RevocationUnavailable(
            f"the BrandCRLIdentifier ended at {snapshot.not_after:%Y-%m-%d %H:%M:%S} UTC:"
            " the PCertReq is not sent until the revocation data is current"
        )


class JudgedFetch:
    """The merchant's PCertReq, sent only while its revocation data could judge the answer.

    A PCertRes the trust store could not judge (``RevocationUnavailable``: its BCI past
    its window, a CRL past its nextUpdate, a BCI listing no CRL for the gateway's CA) is
    not asked for again until the store holds other revocation data: sent regardless, each
    use after the hourly TTL would cost the gateway a signature and the merchant a
    verification for an answer it could only refuse (such a failure is not held off). The
    chain code's own verdict, not a copy of its rules: the data a snapshot holds never
    changes, and time passing only ends its window and its CRLs' (``chain``), so what
    it could not judge once it cannot judge later. The feed refreshes first
    (``ensure_fresh``): the data it installs is asked with at once.

    Called by ``GatewayKeys`` under its lock, one fetch at a time."""

    def __init__(
        self,
        trust: TrustStore,
        refresh: Callable[[], None],
        ask: Callable[[], GatewayCertificate],
    ) -> None:
        """``refresh``: the revocation feed's ``ensure_fresh``; ``ask``: the PCertReq."""
        self._trust, self._refresh, self._ask = trust, refresh, ask
        # The revocation data the last PCertRes could not be judged by (None: it was
        # judged; the data held is never None once ``revocation_current`` passed), and why.
        self._unjudged: RevocationSnapshot | None = None
        self._why = ""

    def __call__(self) -> GatewayCertificate:
        self._refresh()
        revocation_current(self._trust)
        held = self._trust.revocation
        if held is self._unjudged:
            raise RevocationUnavailable(
                f"the revocation data held could not judge the last PCertRes ({self._why}):"
                " the PCertReq is not sent until the feed installs other data"
            )
        try:
            answer = self._ask()
        except RevocationUnavailable as unjudged:
            # The data asked with, not any installed meanwhile: that is asked with anew.
            self._unjudged, self._why = held, unjudged.reason
            raise
        self._unjudged = None  # the snapshot it named is not held on to
        return answer


def _raised_again(failure: Exception) -> Exception:
    """A copy of the failure a fetch kept, for a later use to raise. Raised again itself,
    the one object would take on each raising thread's traceback, and as its context the
    exception that thread was handling (an unrelated order's failure), to show in every
    other thread's report of it.

    ``copy.copy`` first, which keeps what a kind holds outside its arguments (a
    FileNotFoundError's file name); else the kind rebuilt from its arguments and
    ``__dict__`` without its ``__init__`` (one whose arguments are not its own, as
    ``TransportError``'s message). Either only if it reads as the failure does. The copy
    carries no traceback, context or cause of the failure's, and notes of its own: one
    added to it stays on it. The object itself (its traceback dropped) only for a kind
    neither way copies, rather than a TypeError in its place."""
    for made in (copy.copy, _rebuilt):
        try:
            again = made(failure)
            same = type(again) is type(failure) and str(again) == str(failure)
        except Exception:  # noqa: BLE001, S112  a kind that way cannot copy: the next
            continue
        if same:
            return _cleaned(again, failure)
    return failure.with_traceback(None)


def _rebuilt(failure: Exception) -> Exception:
    """``failure``'s kind from its arguments and ``__dict__``, its ``__init__`` not run."""
    kind = type(failure)
    again = kind.__new__(kind, *failure.args)
    again.__dict__.update(getattr(failure, "__dict__", {}))
    return again


def _cleaned(again: Exception, failure: Exception) -> Exception:
    """``again`` with nothing of ``failure``'s raising and notes of its own."""
    again.__traceback__ = again.__context__ = again.__cause__ = None
    again.__suppress_context__ = False
    notes = getattr(failure, "__notes__", None)
    if isinstance(notes, list):
        again.__notes__ = list(notes)
    return again


def _one_run(before: Exception | None, exc: Exception) -> bool:
    """Whether ``exc`` continues the run of failures ``before`` ended: the same kind
    exactly (a subclass, such as the gateway's ``NotServed`` before a local
    ``ConfigError``, is another story to tell), any failure to reach the gateway one."""
    if isinstance(before, TransportError) and isinstance(exc, TransportError):
        return True
    return type(before) is type(exc)


@dataclass(frozen=True)
class _Stale:
    """Why ``GatewayKeys`` fetches the gateway's certificates again: ``refused`` when its
    trust store no longer accepts them (a warning), not merely their age."""

    why: str
    refused: bool = False


class GatewayKeys:
    """The gateway certificates the merchant names in PInitRes and seals requests to."""

    def __init__(
        self,
        fetch: Callable[[], GatewayCertificate],
        ttl: timedelta = GATEWAY_CERTIFICATES_TTL,
        clock: Callable[[], float] = time.monotonic,
        *,
        trust: TrustStore | None = None,
    ) -> None:
        """``fetch``: a verified PCertRes item for the merchant's brand; one that serves
        no certificates is refused as ``gateway_certificates`` refuses it (``served``).

        ``trust``: the merchant's trust store, which its revocation feed keeps current
        (``clients.revocation``): certificates it refuses are fetched again at the next
        ``current``, not an hour later. None (a tool or a test with no trust store of its
        own) judges them by their age and end alone."""
        self._fetch = fetch
        self._ttl = ttl.total_seconds()
        self._clock = clock
        self._trust = trust
        self._lock = threading.Lock()
        self._current: ServedCertificates | None = None
        self._fetched_at = 0.0
        # Fetches ended; the latest one's failure, and until when it stands for the next
        # (``FETCH_HOLD_OFF_SECONDS``); once the trust store refused those held, why.
        self._ended = 0
        self._failure: Exception | None = None
        self._held_until = self._hold_off = 0.0
        self._withdrawn: str | None = None

    def _stale(self, current: ServedCertificates) -> _Stale | None:
        """Why the certificates held must be fetched again; None while they serve."""
        age = self._clock() - self._fetched_at
        if age >= self._ttl:
            return _Stale(f"fetched {age:.0f} s ago")
        # Ask again before the certificate ends rather than hand out one about to expire.
        ends = current.key_exchange.not_after
        if ends <= datetime.now(UTC) + timedelta(seconds=self._ttl):
            return _Stale(f"the key-exchange certificate ends at {ends:%Y-%m-%d %H:%M} UTC")
        return self._refused(current)

    def _refused(self, current: ServedCertificates) -> _Stale | None:
        """Why the trust store no longer accepts the certificates held; None while it does.

        Its chain verification, whose answer it caches until its revocation data changes
        (or the chain's validity or that data's window ends): a dictionary lookup per
        certificate while they stand, a full validation once the feed installs new data.
        Revocation data too old to judge by (``RevocationUnavailable``) refuses nothing
        here: a PCertRes fetched now would be judged by the same data, and every message
        the merchant opens waits on that feed anyway (``authorizer``). Certificates it
        refused are forgotten (``_held_or_fetched``): it never judges them again."""
        if self._trust is None:
            return None
        held = (
            (current.key_exchange, CertificateUsage.KEY_EXCHANGE),
            (current.signature, CertificateUsage.SIGNATURE),
        )
        for certificate, usage in held:
            try:
                self._trust.verify_chain(certificate.der, current.chain, PAYMENT_GATEWAY, usage)
            except RevocationUnavailable:
                return None
            except ProtocolError as refused:
                return _Stale(
                    f"the merchant's trust store refuses the gateway's {usage.value}"
                    f" certificate {certificate.thumbprint.hex()[:8]}: {refused}",
                    refused=True,
                )
        return None

    def current(self) -> ServedCertificates:
        """The gateway's verified certificates, fetched again when stale.

        Raises what ``fetch`` raised when they must be fetched again and cannot be. One
        thread fetches at a time; after a failure the others raise it at once meanwhile
        (not one PCertReq each in turn), as does a caller that waited for a fetch that
        failed. The gateway's word (``held_off``) is raised again, unfetched, until its
        hold-off ends (``FETCH_HOLD_OFF_SECONDS``); any other failure, the next use asks
        again, as any request to the gateway does, so that its return (or the merchant's
        key backend's) is seen at once. None the trust store refused is handed out
        again, even once it cannot judge them (revocation data past its window): wallets
        and the gateway would refuse it."""
        current = self._current
        if current is not None and self._stale(current) is None:
            return current
        seen = self._ended
        if not self._lock.acquire(blocking=False):
            failure = self._failure
            if failure is not None:  # another thread fetches after it failed: not waited for
                raise _raised_again(failure) from failure.__cause__
            self._lock.acquire()  # the first fetch, or the first since they went stale
        try:
            return self._held_or_fetched(seen)
        finally:
            self._lock.release()

    def _held_or_fetched(self, seen: int) -> ServedCertificates:
        """``current``, the lock held; ``seen``: the fetches ended when the caller came (one
        ended since that failed, or one failed within its hold-off, is raised again)."""
        current = self._current
        stale = None if current is None else self._stale(current)
        if current is not None and stale is None:
            return current
        if stale is not None and stale.refused:  # forgotten: never handed out again
            log.warning("gateway certificates to be fetched again: %s", stale.why)
            self._current, self._withdrawn = None, stale.why
        failure = self._failure
        if failure is not None and (self._ended != seen or self._clock() < self._held_until):
            raise _raised_again(failure) from failure.__cause__
        return self._fetched(stale)

    def _fetched(self, stale: _Stale | None) -> ServedCertificates:
        """The certificates fetched now (the lock held), in place of those held, if any
        (``stale`` says why they no longer serve). A failure is kept (``_failed``) and
        raised as it came, for the caller to meet as any failure of ``fetch``."""
        if stale is not None and not stale.refused:
            log.debug("gateway certificates fetched again: %s", stale.why)
        try:
            current = served(self._fetch())
        except Exception as exc:
            self._failed(exc)
            raise
        finally:
            self._ended += 1
        self._current, self._fetched_at = current, self._clock()
        self._failure, self._hold_off, self._withdrawn = None, 0.0, None
        log.info(
            "gateway certificates: key exchange %s (%s)",
            current.key_exchange.thumbprint.hex()[:8], current.key_exchange.subject_id,
        )  # fmt: skip
        return current

    def _failed(self, exc: Exception) -> None:
        """Keep a fetch's failure: held off, doubling, if it was the gateway's word; asked
        again at the next use if not. A warning for each held off, and for each run of any
        other failure of one kind (an outage, the key backend away) its first alone."""
        held = held_off(exc)
        quiet = not held and self._failure is not None and not held_off(self._failure)
        quiet = quiet and _one_run(self._failure, exc)
        self._failure, self._held_until = exc, 0.0
        if held:
            self._hold_off = min(2 * self._hold_off or FETCH_HOLD_OFF_SECONDS, FETCH_HOLD_OFF_MAX)
            self._held_until = self._clock() + self._hold_off
        again = f"in {self._hold_off:.0f} s" if held else "at the next use"
        level = logging.DEBUG if quiet else logging.WARNING
        if self._withdrawn is not None:
            log.log(
                level, "gateway certificates not fetched again (%s: %s); none is handed out"
                " until they are, asked again %s", type(exc).__name__, exc, again,
            )  # fmt: skip
        else:
            log.log(
                level, "gateway certificates not fetched (%s: %s), asked again %s",
                type(exc).__name__, exc, again,
            )  # fmt: skip

    def recipient(self) -> Recipient:
        """The gateway key-exchange key requests are sealed to."""
        return self.current().key_exchange.recipient()
