"""``CertificateAuthority``: the Cardholder, Merchant and Payment Gateway CAs behind one door.

Plain Python: methods take the wire requests and return the bytes of the signed (or
sealed) answer, or raise ``setcore.errors.ProtocolError`` when the request cannot be
processed; the servicer turns that into a signed SET Error from the CA named by
``error_signer``. Which CA answers is decided by the request: cardholder messages go to
the Cardholder CA; Me-AqCInit by its RequestType; CertReq by the key-exchange
certificate it is sealed to (an earlier one of a CA's too, for its WRONG_RECIPIENT);
CertInq by the request it asks about, else by its session or its LID-CA (an UNKNOWN_LID
from the requester's own CA). The Payment Gateway CA answers no registration unless
``CaPolicy.gateway_registration`` says so (MESSAGE_NOT_SUPPORTED): a gateway certificate
is what wallets seal PANs to. A CA whose own certificate is revoked or has expired
issues nothing and answers nothing (``gateway.ca.standing``: UNAVAILABLE); one whose
key-exchange certificate alone is starts no registration and opens no new CertReq, but
answers CertInq and a retried CertReq, which need its signature only.

Every call first lets the revocation watcher look at ``ca.db`` (at most once a second),
so a revocation made by ``setpay ca revoke`` elsewhere is stapled and enforced here, even
while another call's re-publish of the CRLs and BCI waits for ca.db's write lock (the
call does not wait for it, but installs what ca.db holds); a renewal is also checked
against ``ca.db``'s revocations in the transaction that decides it, so one revoked a
moment before is refused all the same. A refresh that fails is retried later and stops
no call while the data held is current; once it is not, every call raises
``RevocationStale`` (``gateway.ca.watcher``). Every call also sweeps
``ca.db`` of expired sessions and old stored answers now and then. A sweep never waits
for ca.db: it tries once, on a connection of its own that does not wait for a lock
(``CaStore.open_for_sweep``), so neither the request that sweeps nor one that needs ca.db
meanwhile waits behind it. A sweep that fails (ca.db busy) fails no call; it is logged, counted
(``housekeeping``, copied into the metrics) and tried again a little later. Once a day a
sweep also logs, as the bank's start does, each of the CAs' own certificates that ends
within a month (``gateway.ca.standing.ENDING_WARNING``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import datetime

from gateway.ca import publishing
from gateway.ca.cardholder import CardholderRegistrar, Clock, now_utc
from gateway.ca.errors import CaError, CaUnavailable
from gateway.ca.issuer import IssuerDirectory
from gateway.ca.keys import AuthorityKeys, CaSide
from gateway.ca.merchant import MerchantRegistrar, lid_ca_type
from gateway.ca.policy import CaPolicy
from gateway.ca.records import IssuedCertificate
from gateway.ca.replay import KIND_CERT, KIND_CERT_INQ, SESSION_KINDS, replayed, request_digest
from gateway.ca.standing import CaStanding
from gateway.ca.store import CaStore
from gateway.ca.watcher import RevocationWatcher
from gateway.sqlite_errors import is_busy
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, ProtocolError, fail
from setcore.freshness import now_ms
from setcore.pki.roles import CARDHOLDER_CA, PAYMENT_GATEWAY_CA, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.registration import REQUEST_KINDS, RevocationData
from setcore.registration_certreq import (
    CertAnswer,
    peek_cert_request,
    read_cert_inquiry,
    verify_cert_inquiry,
)
from setcore.registration_merchant_ca import check_me_aq_c_init_request
from setpay.v1 import registration_pb2

# GetCertificates answers at most this many certificates: a requester asks for a chain or
# two at a time (the same bound as a CertBundle's).
MAX_FETCH_CERTIFICATES = 16
# Expired sessions and old stored answers are swept at most this often.
HOUSEKEEPING_INTERVAL_MS = 10 * 60 * 1000
# After a failed sweep the next try waits this long, not for the next request: ca.db
# found busy (``setpay ca revoke``, a slow disk) is likely still busy a moment later, and
# what is left to sweep can wait a minute. The pause also spaces the log lines of a
# failure that persists to one a minute per worker.
HOUSEKEEPING_RETRY_MS = 60 * 1000
# A running CA repeats start's warning of its own certificates' ends this often: a bank
# that runs for months said it only at a start nobody reads any more, then registration
# stopped. A line a day per worker, per ending certificate, is read and not a flood; the
# warning comes with a sweep, so an idle CA says it at its next request.
ENDING_WARNING_INTERVAL_MS = 24 * 60 * 60 * 1000
# A sweep's wait for ca.db's lock: none. A sweep that waited out the store's busy timeout
# (store.BUSY_TIMEOUT_MS, 5 s) would hold up the request that sweeps, and every user of
# the store's connection in the worker (the revocation watcher's poll of an
# authorization among them); a sweep skipped now costs nothing.
SWEEP_BUSY_TIMEOUT_MS = 0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HousekeepingCounters:
    """Failed sweeps of ``ca.db`` since the CA started, by cause (copied into metrics)."""

    #: Another connection was writing ca.db (a registration, ``setpay ca revoke``): the
    #: sweep never waits, so it skipped. Expected whenever the CA is busy; alarming only
    #: at every retry for hours, as nothing is swept and ca.db grows.
    busy: int
    #: ca.db could not be used (``CaUnavailable``: I/O, disk full, damaged, gone):
    #: expected now and then, alarming only when it lasts.
    outages: int
    #: Anything else: a bug, which fails every sweep alike until it is mended, while
    #: expired sessions and old answers pile up in ca.db.
    bugs: int


class CertificateAuthority:
    """The brand's CAs: registration for cardholders, merchants and gateways; revocation."""

    def __init__(
        self,
        keys: AuthorityKeys,
        store: CaStore,
        trust: TrustStore,
        issuer: IssuerDirectory,
        *,
        policy: CaPolicy | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self._keys = keys
        self._store = store
        self._trust = trust
        self._policy = policy or CaPolicy()
        self._clock = clock
        self._watcher = RevocationWatcher(store, trust, keys=keys)
        self._watcher.check(force=True, strict=False)  # RevocationStale if nothing current
        self._standing = CaStanding(keys, trust)
        self._sweep_due_ms = 0
        # The bank's start has just warned (``gateway.bank_pki``): the next warning is due
        # a day after it.
        self._ending_due_ms = clock() + ENDING_WARNING_INTERVAL_MS
        # Failed sweeps by cause: changed under _sweep_lock, read by the metrics' sampler.
        self._sweep_busy = 0
        self._sweep_outages = 0
        self._sweep_bugs = 0
        self._sweep_lock = threading.Lock()
        args = (store, trust, issuer, self._policy, self._watcher.current, clock)
        self._cardholder = CardholderRegistrar(keys.cardholder, *args)
        self._merchants = {
            side.ca_type: MerchantRegistrar(side, *args) for side in (keys.merchant, keys.gateway)
        }

    @property
    def keys(self) -> AuthorityKeys:
        """The CA keys and certificates."""
        return self._keys

    @property
    def watcher(self) -> RevocationWatcher:
        """The watcher that keeps the trust store's revocation data current."""
        return self._watcher

    @property
    def housekeeping(self) -> HousekeepingCounters:
        """Sweeps of ``ca.db`` that failed since the CA started, by cause."""
        return HousekeepingCounters(self._sweep_busy, self._sweep_outages, self._sweep_bugs)

    def _enter(self) -> None:
        """Before each request: current revocation data, and now and then a sweep."""
        self._watcher.check()
        now = self._clock()
        if now < self._sweep_due_ms:
            return
        if not self._sweep_lock.acquire(blocking=False):
            return  # another thread is sweeping
        try:
            if now >= self._sweep_due_ms:  # not swept by another thread meanwhile
                self._warn_ending(now)
                self._sweep(now)
        finally:
            self._sweep_lock.release()

    def _warn_ending(self, now: int) -> None:
        """Log the CAs' own certificates that end soon, at most once a day."""
        if now < self._ending_due_ms:
            return
        self._ending_due_ms = now + ENDING_WARNING_INTERVAL_MS
        for line in self._standing.ending(now_utc(now)):
            log.warning("%s", line)

    def _sweep(self, now: int) -> None:
        """Forget expired sessions and old answers; a failure is the CA's, not the request's."""
        try:
            # A connection of the sweep's own (``SWEEP_BUSY_TIMEOUT_MS``), not the store's,
            # whose lock every request of the worker takes.
            sweeping = CaStore.open_for_sweep(self._store.path, SWEEP_BUSY_TIMEOUT_MS)
            with closing(sweeping) as store, store.write() as tx:
                tx.purge(
                    now,
                    now - self._policy.response_retention_ms,
                    session_kinds=SESSION_KINDS,
                    session_answers_before_ms=now - self._policy.session_lifetime_ms,
                )
        except Exception as exc:
            self._sweep_due_ms = now + HOUSEKEEPING_RETRY_MS
            # Another writer now and then is the CA at work; ca.db away is expected now and
            # then; anything else is a bug, traceback and all.
            busy = isinstance(exc, CaUnavailable) and _busy_cause(exc)
            outage = isinstance(exc, CaUnavailable) and not busy
            if busy:
                self._sweep_busy += 1
            elif outage:
                self._sweep_outages += 1
            else:
                self._sweep_bugs += 1
            log.log(
                logging.INFO if busy else logging.WARNING if outage else logging.ERROR,
                "ca.db housekeeping %s (%s: %s); trying again in %d s",
                "skipped, ca.db busy" if busy else "failed",
                type(exc).__name__, exc, HOUSEKEEPING_RETRY_MS // 1000,
                exc_info=None if busy or outage else exc,
            )  # fmt: skip
        else:
            self._sweep_due_ms = now + HOUSEKEEPING_INTERVAL_MS

    # -- requests ---------------------------------------------------------------------

    def card_c_init(self, request: registration_pb2.CardCInitRequest) -> bytes:
        """CardCInitRes bytes: Signed(CardCInitResTBS)."""
        self._enter()
        self._check_brand(request.brand_id)
        self._check_standing(CARDHOLDER_CA)
        return self._cardholder.card_c_init(request)

    def reg_form(self, request: registration_pb2.RegFormRequest) -> bytes:
        """RegFormRes bytes: Signed(RegFormResTBS)."""
        self._enter()
        self._check_standing(CARDHOLDER_CA)
        return self._cardholder.reg_form(request)

    def me_aq_c_init(self, request: registration_pb2.MeAqCInitRequest) -> bytes:
        """Me-AqCInitRes bytes: Signed(MeAqCInitResTBS)."""
        self._enter()
        kind, identity = check_me_aq_c_init_request(request)
        self._check_served(kind.ca_type)
        self._check_brand(request.brand_id)
        self._check_standing(kind.ca_type)
        return self._merchants[kind.ca_type].me_aq_c_init(request, kind, identity)

    def cert(self, request: registration_pb2.CertRequest) -> bytes:
        """CertRes bytes: KeySealed for cardholders, Signed for merchants and gateways."""
        self._enter()
        envelope = peek_cert_request(request)
        side = self._keys.side_for_recipient(envelope.recipient_thumb)
        if side is None:
            raise fail(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, "sealed to no key of this CA")
        self._check_served(side.ca_type)
        self._check_signing(side.ca_type)
        digest = request_digest(KIND_CERT, request.cert_req)
        with self._store.read() as tx:
            stored = replayed(tx, envelope.rrpid, KIND_CERT, digest)
        if stored is not None:
            return stored  # the answer to a request opened when the CA could be sealed to
        self._check_standing(side.ca_type)
        if side.ca_type == CARDHOLDER_CA:
            return self._cardholder.cert(envelope, digest)
        return self._merchants[side.ca_type].cert(envelope, digest)

    def cert_inq(self, request: registration_pb2.CertInqRequest) -> bytes:
        """CertInqRes bytes: the state of the request the inquiry's key asked for."""
        self._enter()
        tbs, signed = read_cert_inquiry(request)
        digest = request_digest(KIND_CERT_INQ, request.cert_inq_req)
        now = self._clock()
        with self._store.write() as tx:
            stored = replayed(tx, tbs.rrpid, KIND_CERT_INQ, digest)
            if stored is not None:
                return stored
            record = tx.latest_request(tbs.lid_ee, tbs.lid_ca)
            if record is None:
                raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "no request for this registration")
            verify_cert_inquiry(signed, record.sig_spki)
            # Signed, never sealed to the CA: its key-exchange certificate is no concern.
            self._check_signing(record.ca_type)
            answer = CertAnswer(
                tbs.rrpid, tbs.lid_ee, tbs.chall_ee3, tbs.lid_ca, tuple(tbs.thumbs.thumbs)
            )
            if record.ca_type == CARDHOLDER_CA:
                body = self._cardholder.answer_inquiry(tx, record, answer)
            else:
                body = self._merchants[record.ca_type].answer_inquiry(tx, record, answer)
            tx.put_response(tbs.rrpid, KIND_CERT_INQ, digest, body, now)
        return body

    def brand_crl_identifier(self) -> RevocationData:
        """The current signed BCI and the CRLs it lists."""
        self._enter()
        current = self._watcher.current()
        if current is None:
            raise fail(ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE, "no revocation data published")
        return current

    def certificates(self, thumbs: Sequence[bytes]) -> list[bytes]:
        """DER certificates of the brand by thumbprint (unknown ones left out)."""
        self._enter()
        if len(thumbs) > MAX_FETCH_CERTIFICATES:
            raise fail(ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG, "too many thumbprints")
        with self._store.read() as tx:
            return tx.certificate_ders(thumbs)

    # -- operators ----------------------------------------------------------------------

    def decide_pending(self, lid_ee: bytes, lid_ca: bytes, *, approve: bool) -> int:
        """Issue or refuse a cardholder request the issuer pended; the new status. A
        Cardholder CA whose certificate is revoked or expired issues nothing
        (``CaCertificateUnusable``; the request stays pended)."""
        self._watcher.check()  # a revocation of the CA made elsewhere, seen as by a request
        self._check_signing(CARDHOLDER_CA)
        return self._cardholder.decide_pending(lid_ee, lid_ca, approve=approve)

    def revoke(
        self, *, serial: int | None = None, thumb: bytes | None = None, at: datetime | None = None
    ) -> IssuedCertificate:
        """Revoke a certificate, publish the new CRL and BCI, and enforce them here at once."""
        revoked, _ = publishing.revoke(self._store, self._keys, serial=serial, thumb=thumb, at=at)
        self._watcher.check(force=True)
        return revoked

    # -- who signs an Error --------------------------------------------------------------

    def error_signer(self, request: object) -> Credentials:
        """The CA that answers ``request``; never raises (an Error must always be signed).

        A requester takes a registration's Errors from its own CA only, so the signer is
        whatever names that CA best: a CertReq's recipient, current or one of the CAs'
        key-exchange certificates ca.db recorded before (a resend sealed to it is
        WRONG_RECIPIENT); a CertInq's request record, else its session, else its LID-CA,
        which a Merchant or Payment Gateway CA makes naming itself
        (``gateway.ca.merchant.new_lid_ca``): UNKNOWN_LID is how a merchant learns that
        the CA never received its CertReq, and it is long after the session was swept.
        """
        side: CaSide = self._keys.cardholder
        # An unreadable request is answered by the Cardholder CA, as is one whose CA
        # ca.db cannot tell (away, or failing on a bug: StoreBug is no StoreError).
        with suppress(ProtocolError, CaError):
            if isinstance(request, registration_pb2.MeAqCInitRequest):
                kind = REQUEST_KINDS.get(request.request_type)
                side = self._keys.side(kind.ca_type) if kind else self._keys.merchant
            elif isinstance(request, registration_pb2.CertRequest):
                thumb = peek_cert_request(request).recipient_thumb
                side = self._keys.side_for_recipient(thumb) or self._former_recipient(thumb) or side
            elif isinstance(request, registration_pb2.CertInqRequest):
                tbs, _ = read_cert_inquiry(request)
                side = self._inquired_side(tbs.lid_ee, tbs.lid_ca) or side
        return side.credentials

    def _former_recipient(self, thumb: bytes) -> CaSide | None:
        """The CA whose earlier key-exchange certificate (in ca.db) has this thumbprint."""
        with self._store.read() as tx:
            cert = tx.certificate(thumb)
        if cert is None or cert.usage != CertificateUsage.KEY_EXCHANGE.value:
            return None
        return next((s for s in self._keys.sides if s.ca_type == cert.certificate_type), None)

    def _inquired_side(self, lid_ee: bytes, lid_ca: bytes) -> CaSide | None:
        """The CA a CertInq about (``lid_ee``, ``lid_ca``) is for, as far as it can tell."""
        with self._store.read() as tx:
            record = tx.latest_request(lid_ee, lid_ca)
            session = tx.session(lid_ca) if record is None else None
        if record is not None:
            return self._keys.side(record.ca_type)
        if session is not None:  # a LID-CA made before LID-CAs named their CA
            return self._keys.side(session.ca_type)
        ca_type = lid_ca_type(lid_ca)
        return self._keys.side(ca_type) if ca_type is not None else None

    def _check_served(self, ca_type: int) -> None:
        if ca_type == PAYMENT_GATEWAY_CA and not self._policy.gateway_registration:
            raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "no gateway registration here")

    def _check_standing(self, ca_type: int) -> None:
        # Before an answer is built: nothing the CA signs now is trusted, and nothing sealed
        # to its key-exchange certificate should be sent to it.
        self._standing.require(ca_type, now_utc(self._clock()))

    def _check_signing(self, ca_type: int) -> None:
        # Before an answer that asks nothing to be sealed to the CA: only its signature
        # must be one a requester trusts.
        self._standing.require_signing(ca_type, now_utc(self._clock()))

    def _check_brand(self, brand_id: str) -> None:
        if brand_id != self._keys.brand_id:
            raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "brand not served here")


def _busy_cause(exc: BaseException) -> bool:
    """Whether ``exc`` comes of SQLite's BUSY or LOCKED: another connection writing."""
    cause = exc.__cause__
    return isinstance(cause, sqlite3.Error) and is_busy(cause)
