"""The Cardholder CA's decisions: sessions, Chall-CA, the issuer's word, issuing.

CertReq processing follows SET-PROTOCOL.md 4.3, in order:

1. decrypt (a failure is a SET Error: without the back key no CertRes can be addressed);
2. signatures: proof of possession by the new key, and the renewed key for a renewal
   (SIG_VALIDATION_FAIL); a key off the allow-list (REJECTED_BY_AGENT); dates by the
   CA's clock; a renewed certificate ca.db holds revoked when the decision is taken is
   refused like one the trust store knew revoked (a SET Error, REVOKED_CERTIFICATE);
3. the session and its Chall-CA, issued in RegFormRes for this request type and not yet
   used (CHALLENGE_MISMATCH); the brand, and the form this CA handed out, every field of
   it filled in but perhaps the enrolment code, and none other (REJECTED_BY_AGENT);
4. the key was never claimed by any request before (KEY_ALREADY_CERTIFIED);
5. the issuer knows the card, with its enrolment code if it has one (``enrolment``;
   REQUEST_PENDED for a person to decide), and a card without a code is not past its
   limit of refusals (``card_failures``). Every refusal of the card, whatever the reason
   (no such account, another expiry, a wrong or missing enrolment code, an account not
   active, a card that ended, one past its limit), is answered REJECTED_BY_ISSUER and the
   reason logged, never the card number or the code: told apart, the answers would say
   which numbers are cards of this bank and, a month at a time, their expiry;
6. Nonce-CCA, PANSecret, the blinded account; a certificate valid no longer than the
   card; everything recorded and the answer stored in one transaction.

A refusal by the issuer is kept as its stored answer only (``replay``), which a resend
gets again until the answer is purged: not as a decided request, whose wallet back key
and card expiry month the CA has no use for, and whose rows anyone could add without
end. A CertInq about it finds no request (UNKNOWN_LID): the wallet registers again. The
refusals of steps 3 and 4 change nothing and are not kept at all
(``replay.ANSWERED_AFRESH``): a resend is decided again, and refused again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from gateway.ca.card_failures import card_refused, count_failure, forget_failures
from gateway.ca.enrolment import ask_issuer, completes_but_code, given_code, with_code_field
from gateway.ca.errors import NoPendingRequest
from gateway.ca.issuer import IssuerDirectory
from gateway.ca.keys import CaSide
from gateway.ca.policy import CaPolicy
from gateway.ca.publishing import record_certificate
from gateway.ca.records import PendedRenewal, RequestRecord, Session
from gateway.ca.replay import (
    KIND_CARD_C_INIT,
    KIND_CERT,
    KIND_REG_FORM,
    keeps_answer,
    replayed,
    request_digest,
)
from gateway.ca.store import CaStore, StoreTransaction
from setcore.errors import ErrorCode, ProtocolError, fail
from setcore.freshness import new_id
from setcore.pan import blinded_account, pan_secret
from setcore.pki.issuance import card_expiry_end, issue_cardholder
from setcore.pki.truststore import TrustStore
from setcore.registration import (
    CERT_STATUS_NAMES,
    REJECTED_BY_AGENT,
    REQUEST_COMPLETE,
    REQUEST_PENDED,
    RevocationData,
    key_thumbprint,
    load_public_key,
    refusal_status,
    request_kind,
)
from setcore.registration_cardholder_ca import (
    CardRequest,
    build_card_c_init_response,
    build_card_cert_response,
    build_reg_form_response,
    check_card_c_init_request,
    open_card_cert_request,
    open_reg_form_request,
    verify_card_cert_request,
)
from setcore.registration_certreq import CertAnswer, CertRequestEnvelope, ProvenKeys
from setpay.v1 import registration_pb2

CHALLENGE_MISMATCH = registration_pb2.CERT_STATUS_CODE_CHALLENGE_MISMATCH
KEY_ALREADY_CERTIFIED = registration_pb2.CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED
REJECTED_BY_ISSUER = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER
# What an IssuerDirectory may answer for a card to go on; anything else is a refusal.
ISSUER_ACCEPTS = frozenset({REQUEST_COMPLETE, REQUEST_PENDED})
# LID-CA: the CA's own label for a registration; 16 random bytes cannot collide.
LID_CA_BYTES = 16

log = logging.getLogger(__name__)

Clock = Callable[[], int]


def now_utc(ms: int) -> datetime:
    """A Unix-milliseconds clock reading as an aware datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def session_valid(session: Session | None, lid_ee: bytes, ca_type: int, now_ms: int) -> bool:
    """The session exists, belongs to this requester and CA, and has not expired."""
    return (
        session is not None
        and session.lid_ee == lid_ee
        and session.ca_type == ca_type
        and now_ms <= session.expires_ms
    )


def challenge_matches(session: Session, chall_ca: bytes, request_type: int) -> bool:
    """Chall-CA is the one issued for this request type and not used yet."""
    return (
        session.chall_ca is not None
        and not session.chall_used
        and session.request_type == request_type
        and session.chall_ca == chall_ca
    )


def renewed_revoked(tx: StoreTransaction, serial: int, issuers: Sequence[bytes]) -> bool:
    """True when ca.db holds a revocation of the renewed certificate (by its issuer, the
    first of ``issuers``, and ``serial``) or of a CA above it (by thumbprint, ``issuers``
    from its issuer up): see ``refuse_revoked_renewal``."""
    return tx.serial_revoked(issuers[0], serial) or any(tx.is_revoked(t) for t in issuers)


def refuse_revoked_renewal(tx: StoreTransaction, keys: ProvenKeys) -> None:
    """REVOKED_CERTIFICATE when ca.db, in the deciding transaction, holds a revocation of
    the renewed certificate or of a CA above it.

    The renewal signature was verified before, against this process's trust store, which
    learns of a revocation made elsewhere (``setpay ca revoke``, another worker) only at
    the watcher's next poll, and never of one committed after the check: without this, a
    holder whose certificates were revoked to free its merchant ID could renew them.
    Raised inside the transaction, so nothing is written: the answer a renewal signed by
    a revoked certificate gets anyway (a SET Error).

    The renewed certificate is looked up by its issuer and serial, as its CRL names it: the
    requester chose its thumbprint, which is its twin's if it sent the twin (the same
    certificate: ``setcore.pki.chain``). The CAs above it go by thumbprint: the trust
    store refuses a path through a CA's twin (the BCI names each CA's CRL by that CA's
    thumbprint), so theirs are the ones ca.db records.
    """
    renewed = keys.renewed
    if renewed is None:
        return
    if renewed_revoked(tx, renewed.serial_number, renewed.chain_thumbs[1:]):
        raise fail(ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, "the renewed certificate is revoked")


def reg_form_challenge(tx: StoreTransaction, session: Session, request_type: int) -> bytes:
    """The Chall-CA a RegFormRes hands out: the session's own, issued once, never replaced.

    Anyone who saw the LIDs (CardCInitReq and -Res travel in the clear) can send a
    RegFormReq, so one must not change the session: a used Chall-CA means the registration
    was decided (UNKNOWN_LID, not re-opened); an unused one is handed out again rather than
    replaced, which would make the wallet's CertReq fail CHALLENGE_MISMATCH. Repeating it
    discloses nothing: RegFormRes is signed, not encrypted. Asking again for another
    request type is refused too (UNKNOWN_LID): a new registration starts with CardCInitReq.
    """
    if session.chall_used:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "registration already decided")
    if session.chall_ca is not None:
        if session.request_type != request_type:
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "Chall-CA issued for another type")
        return session.chall_ca
    chall_ca = new_id()
    tx.set_challenge(session.lid_ca, chall_ca, request_type)
    return chall_ca


def _recorded_card_end(expiry: str | None) -> datetime | None:
    """When the card of a recorded request ends; None for a record without its expiry, or
    with one ``check_expiry`` refuses now (a year it took before the years were bounded):
    such a pended request is refused, not failed on."""
    if not expiry:
        return None
    try:
        return card_expiry_end(expiry)
    except ProtocolError:
        log.warning("pended request with a card expiry of no plausible year: refused")
        return None


class CardholderRegistrar:
    """CardCInit, RegForm and CertReq at the Cardholder CA."""

    def __init__(
        self,
        side: CaSide,
        store: CaStore,
        trust: TrustStore,
        issuer: IssuerDirectory,
        policy: CaPolicy,
        revocation: Callable[[], RevocationData | None],
        clock: Clock,
    ) -> None:
        self._side = side
        self._store = store
        self._trust = trust
        self._issuer = issuer
        self._policy = policy
        self._revocation = revocation
        self._clock = clock
        self._form = with_code_field(policy.cardholder_form)

    def card_c_init(self, request: registration_pb2.CardCInitRequest) -> bytes:
        """Open a session (LID-CA) and answer with the CA's certificates."""
        check_card_c_init_request(request)
        plain = registration_pb2.CardCInitRequest()
        plain.CopyFrom(request)
        plain.ClearField("header")
        digest = request_digest(KIND_CARD_C_INIT, plain.SerializeToString(deterministic=True))
        now = self._clock()
        with self._store.write() as tx:
            stored = replayed(tx, request.rrpid, KIND_CARD_C_INIT, digest)
            if stored is not None:
                return stored
            lid_ca = new_id()[:LID_CA_BYTES]
            tx.put_session(
                Session(
                    lid_ca, request.lid_ee, self._side.ca_type, 0, None, False, "", "",
                    now, now + self._policy.session_lifetime_ms,
                )
            )  # fmt: skip
            body = build_card_c_init_response(
                self._side.credentials, request, lid_ca, revocation=self._revocation()
            )
            tx.put_response(request.rrpid, KIND_CARD_C_INIT, digest, body, now)
        return body

    def reg_form(self, request: registration_pb2.RegFormRequest) -> bytes:
        """Issue Chall-CA and the form; the PAN is opened and not kept (one form serves
        every BIN: the card is checked with the issuer at CertReq)."""
        view = open_reg_form_request(request, self._side.credentials)
        tbe = view.tbe
        digest = request_digest(KIND_REG_FORM, request.reg_form_req)
        now = self._clock()
        with self._store.write() as tx:
            stored = replayed(tx, tbe.rrpid, KIND_REG_FORM, digest)
            if stored is not None:
                return stored
            session = tx.session(tbe.lid_ca)
            if session is None or not session_valid(session, tbe.lid_ee, self._side.ca_type, now):
                raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "no such registration session")
            chall_ca = reg_form_challenge(tx, session, tbe.request_type)
            body = build_reg_form_response(
                self._side.credentials, tbe, chall_ca, self._form,
                revocation=self._revocation(),
            )  # fmt: skip
            tx.put_response(tbe.rrpid, KIND_REG_FORM, digest, body, now)
        return body

    def cert(self, envelope: CertRequestEnvelope, digest: bytes) -> bytes:
        """Process a cardholder CertReq (see the module docstring for the order)."""
        now = self._clock()
        opened = open_card_cert_request(envelope, self._side.credentials, now=now)
        data = opened.data
        answer = CertAnswer(
            data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca, tuple(data.thumbs.thumbs)
        )

        def respond(status: int, certificate: bytes | None = None, nonce: bytes = b"") -> bytes:
            return build_card_cert_response(
                self._side.credentials, data.back_key, answer, status,
                revocation=self._revocation(), certificate=certificate, nonce_cca=nonce,
            )  # fmt: skip

        try:
            request = verify_card_cert_request(opened, self._trust, at=now_utc(now))
        except ProtocolError as exc:
            refused = refusal_status(exc)
            if refused is None:
                raise
            log.info("cardholder CertReq refused: %s", exc.reason)
            return respond(refused)
        with self._store.write() as tx:
            stored = replayed(tx, data.rrpid, KIND_CERT, digest)
            if stored is not None:
                return stored
            status, certificate, nonce = self._decide(tx, request, now)
            body = respond(status, certificate, nonce)
            if keeps_answer(status):
                tx.put_response(data.rrpid, KIND_CERT, digest, body, now)
        return body

    def _decide(
        self, tx: StoreTransaction, request: CardRequest, now: int
    ) -> tuple[int, bytes | None, bytes]:
        data = request.data
        refuse_revoked_renewal(tx, request.keys)
        session = tx.session(data.lid_ca)
        if session is None or not session_valid(session, data.lid_ee, self._side.ca_type, now):
            return CHALLENGE_MISMATCH, None, b""
        if not challenge_matches(session, data.chall_ca, data.request_type):
            return CHALLENGE_MISMATCH, None, b""
        if data.brand_id != self._side.issuing.brand_id or not completes_but_code(data, self._form):
            return REJECTED_BY_AGENT, None, b""
        key_thumb = key_thumbprint(request.keys.signature_spki)
        if tx.key_claimed(key_thumb):
            return KEY_ALREADY_CERTIFIED, None, b""
        status = self._card_status(tx, request, now)
        tx.use_challenge(data.lid_ca)
        if status not in ISSUER_ACCEPTS:
            return REJECTED_BY_ISSUER, None, b""  # kept as the stored answer only
        record = RequestRecord(
            rrpid=data.rrpid, lid_ee=data.lid_ee, lid_ca=data.lid_ca,
            ca_type=self._side.ca_type, request_type=data.request_type, status=status,
            sig_spki=request.keys.signature_spki, card_expiry=request.expiry,
            back_key=data.back_key,
        )  # fmt: skip
        nonce = new_id()
        secret = pan_secret(request.card_secret, nonce)
        blinded = blinded_account(secret, request.pan, request.expiry)
        record = replace(record, nonce_cca=nonce, blinded_account=blinded)
        tx.claim_key(key_thumb, data.rrpid, None, now)
        if status == REQUEST_PENDED:
            tx.put_request(record, now)
            renewed = request.keys.renewed
            if renewed is not None:
                # For decide_pending: the renewed certificate may be revoked meanwhile.
                tx.put_pended_renewal(
                    data.rrpid, PendedRenewal(renewed.serial_number, renewed.chain_thumbs[1:])
                )
            return REQUEST_PENDED, None, b""
        der, cert_thumb = self._issue(tx, record, now)
        tx.put_request(replace(record, cert_thumbs=(cert_thumb,)), now)
        return REQUEST_COMPLETE, der, nonce

    def _card_status(self, tx: StoreTransaction, request: CardRequest, now: int) -> int:
        """REQUEST_COMPLETE or REQUEST_PENDED as the issuer answers for the card, else
        REJECTED_BY_ISSUER, counted against the card, which locks only a card without an
        enrolment code (``enrolment``: one with a code is counted, never locked); the
        reason goes to the log.

        The issuer is asked first, even about a card past its limit, since only its word
        says whether the card has a code; the requester gets the same refusal either way.
        """
        # Asked under ca.db's write lock on purpose: guesses at one card take turns at its count.
        card = self._issuer.card_key(request.pan)
        code = given_code(request.data)
        word = ask_issuer(self._issuer, request.pan, request.expiry, code)
        # Read and counted whether or not the card has a code: skipping ca.db for a card
        # with one made its refusal measurably quicker than an unknown number's, telling
        # whoever times it that the number is a card of this bank.
        locked = card_refused(tx, card, now)
        if locked and not word.has_code:
            self._log_refusal(request, "the card is past its limit of refusals")
            return REJECTED_BY_ISSUER
        if card_expiry_end(request.expiry) <= now_utc(now):
            reason = "the card has ended"
        elif word.status in ISSUER_ACCEPTS:
            forget_failures(tx, card)
            return word.status
        else:
            reason = word.reason or (
                f"the issuer answered {CERT_STATUS_NAMES.get(word.status, str(word.status))}"
            )
        # 80 bits of code: a guesser cannot get there by trying, so a card with one is never
        # locked, which would let whoever knows the number lock its holder out.
        if count_failure(tx, card, now, lockable=not word.has_code):
            reason += "; the card is now refused for a while (its limit of refusals)"
        elif word.has_code:
            reason += " (counted, never locked: the card has an enrolment code)"
        self._log_refusal(request, reason)
        return REJECTED_BY_ISSUER

    @staticmethod
    def _log_refusal(request: CardRequest, reason: str) -> None:
        # The registration by its LID-CA (the requester's messages carry it in clear),
        # never the card number.
        log.info(
            "cardholder CertReq of registration %s refused REJECTED_BY_ISSUER: %s",
            request.data.lid_ca.hex(), reason,
        )  # fmt: skip

    def _issue(self, tx: StoreTransaction, record: RequestRecord, now: int) -> tuple[bytes, bytes]:
        if record.blinded_account is None or record.card_expiry is None:
            raise ValueError("a cardholder request record without its account data")
        der = issue_cardholder(
            self._side.issuing,
            load_public_key(record.sig_spki, "signature key"),
            record.blinded_account,
            card_expiry_end(record.card_expiry),
            at=now_utc(now),
        )
        issued = record_certificate(tx, der, self._side.issuing, now_utc(now))
        tx.certify_key(key_thumbprint(record.sig_spki), issued.thumb)
        return der, issued.thumb

    def decide_pending(self, lid_ee: bytes, lid_ca: bytes, *, approve: bool) -> int:
        """Issue (or refuse) a pended request; CertInq then reports the outcome. A card
        that ended while its request waited is refused (REJECTED_BY_ISSUER), as is a
        renewal whose renewed certificate (or a CA above it) was revoked meanwhile."""
        now = self._clock()
        with self._store.write() as tx:
            record = tx.latest_request(lid_ee, lid_ca)
            if record is None or record.status != REQUEST_PENDED:
                raise NoPendingRequest("no pended request for this registration")
            # A card that ended while its request waited gets no certificate: one never
            # outlives the card (and could only end before it began).
            card_end = _recorded_card_end(record.card_expiry)
            refused = (
                not approve
                or card_end is None
                or card_end <= now_utc(now)
                or self._renewal_revoked(tx, record)
            )
            tx.forget_pended_renewal(record.rrpid)  # decided either way
            if refused:
                tx.update_request(record.rrpid, REJECTED_BY_ISSUER, (), now)
                return REJECTED_BY_ISSUER
            _, cert_thumb = self._issue(tx, record, now)
            tx.update_request(record.rrpid, REQUEST_COMPLETE, (cert_thumb,), now)
        return REQUEST_COMPLETE

    @staticmethod
    def _renewal_revoked(tx: StoreTransaction, record: RequestRecord) -> bool:
        """True for a pended renewal whose renewed certificate, or a CA above it, ca.db
        holds revoked now; or whose renewed certificate it never recorded (a renewal
        pended before ``pended_renewals`` existed: whether it was revoked is unknown, and
        the holder can renew again)."""
        if not request_kind(record.request_type).renewal:
            return False
        renewed = tx.pended_renewal(record.rrpid)
        if renewed is None:
            log.warning("pended renewal without its renewed certificate recorded: refused")
            return True
        if renewed_revoked(tx, renewed.serial, renewed.chain_thumbs):
            log.info("pended renewal refused: the renewed certificate was revoked meanwhile")
            return True
        return False

    def answer_inquiry(
        self, tx: StoreTransaction, record: RequestRecord, answer: CertAnswer
    ) -> bytes:
        """CertInqRes: the request's current state, sealed under the wallet's back key."""
        if record.back_key is None:
            raise ValueError("a cardholder request record without its back key")
        complete = record.status == REQUEST_COMPLETE
        certificates = tx.certificate_ders(record.cert_thumbs) if complete else []
        return build_card_cert_response(
            self._side.credentials, record.back_key, answer, record.status,
            revocation=self._revocation(),
            certificate=certificates[0] if certificates else None,
            nonce_cca=(record.nonce_cca or b"") if complete else b"",
        )  # fmt: skip
