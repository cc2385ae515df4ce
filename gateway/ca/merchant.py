"""The Merchant and Payment Gateway CAs' decisions: Me-AqCInit sessions and CertReq.

CertReq processing follows SET-PROTOCOL.md 4.3, in order:

1. decrypt; a failure is answered with a signed CertRes carrying DECRYPTION_ERROR (a
   merchant's CertRes is not encrypted, so it can still be addressed by its RRPID);
2. signatures: proof of possession by the new signature key, and the renewed key for a
   renewal (SIG_VALIDATION_FAIL); keys and KEM on the allow-list (REJECTED_BY_AGENT);
   dates by the CA's clock; a renewed certificate revoked in ca.db by the time of the
   decision, even if not yet in this process's trust store (REVOKED_CERTIFICATE, a SET
   Error: ``cardholder.refuse_revoked_renewal``);
3. the session and its Chall-CA, mandatory here although SET made it optional for
   merchants (CHALLENGE_MISMATCH), and the brand, the identity the registration started
   with and the form this CA handed out, filled in with its own fields; and an initial
   request must name a merchant ID (gateway name) holding no live certificate of this
   kind in ca.db (unexpired, unrevoked): a name stays with its holder, who renews, until
   the operator revokes its certificates or they expire; and for a merchant ID the
   acquirer already holds a settlement account for (a lapsed merchant's, or one the bank
   enrolled first), the request's AcctData must name that account
   (``IssuerDirectory.may_register_merchant``), or whoever asked first after the lapse
   would settle into the old merchant's account (REJECTED_BY_AGENT);
4. neither key was ever claimed before, and the two keys differ (KEY_ALREADY_CERTIFIED);
5. a signature and a key-exchange certificate (the latter naming the KEM the key accepts),
   recorded with the keys and the stored answer in one transaction; the acquirer's books
   learn of a new merchant before that transaction commits.

The refusals of steps 3 and 4 change nothing and are not stored (``replay``): a resend is
decided again. Only a certified request's answer is kept.

The acquirer opens a new merchant's settlement account in its own transaction, inside
the CA's, which can still fail after it (signing the answer, storing it, the commit):
the merchant resends the same request, which would now find an account its AcctData does
not name. So an initial merchant request the acquirer would let in is first recorded in
``merchant_openings``, in a transaction committed before the deciding one: that very
request (same RRPID, same bytes) gets in again while its session lasts, its RequestDate
not judged again (the CA judged it when it recorded the bytes: a resend is not refused
MESSAGE_TOO_OLD five minutes on, as the gateway's stored answers are not); another one is
refused as before. Only the request the row names opens the account: should another
worker record a competing request for the same ID between a request's two transactions,
the row names the competitor and the first request is refused at its decision
(REJECTED_BY_AGENT), so an account is never opened by one request and then given to
another by a row naming it. A crash before the account was opened leaves the row and no
account: whoever asks next is let in as if nothing had happened (and replaces the row);
a crash after leaves both, for the request that opened the account. A decision refusing
the request the row names deletes the row (``_forget_refused_opening``): its resend is
judged for freshness again, as any refused request's is.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from gateway.ca.cardholder import (
    CHALLENGE_MISMATCH,
    KEY_ALREADY_CERTIFIED,
    LID_CA_BYTES,
    Clock,
    challenge_matches,
    now_utc,
    refuse_revoked_renewal,
    session_valid,
)
from gateway.ca.issuer import IssuerDirectory
from gateway.ca.keys import CaSide
from gateway.ca.policy import CaPolicy
from gateway.ca.publishing import record_certificate
from gateway.ca.records import RequestRecord, Session
from gateway.ca.replay import KIND_CERT, KIND_ME_AQ_C_INIT, keeps_answer, replayed, request_digest
from gateway.ca.store import CaStore, StoreTransaction
from hsm.base import KemAlgorithm
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError, fail
from setcore.freshness import new_id
from setcore.pki.extensions import MerchantData
from setcore.pki.issuance import issue_gateway, issue_merchant
from setcore.pki.roles import MERCHANT, MERCHANT_CA, PAYMENT_GATEWAY_CA, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.registration import (
    DECRYPTION_ERROR,
    REJECTED_BY_AGENT,
    REQUEST_COMPLETE,
    RequestKind,
    RevocationData,
    fills_form,
    refusal_status,
)
from setcore.registration_certreq import (
    CertAnswer,
    CertRequestEnvelope,
    OpenedCertRequest,
)
from setcore.registration_merchant import (
    Identity,
    MerchantIdentity,
)
from setcore.registration_merchant_ca import (
    MerchantRequest,
    build_me_aq_c_init_response,
    build_merchant_cert_response,
    decryption_error_answer,
    open_merchant_cert_request,
    verify_merchant_cert_request,
)
from setpay.v1 import registration_pb2

# A Merchant or Payment Gateway CA's LID-CA names its CA: ``TYPED_LID_PREFIX``, the CA's
# CertificateType in one byte, then LID_CA_BYTES random bytes (21 bytes in all, within
# SET's 32). SET's CertInq names no CA, one door serves all three, and the session that
# knew the CA is swept an hour after Me-AqCInit: a merchant asking days later about a
# CertReq the CA never received must still get UNKNOWN_LID from its own CA, the only one
# whose Errors it takes (``CertificateAuthority.error_signer``). A cardholder's LID-CA is
# LID_CA_BYTES long, so it never reads as one of these. Not authenticated, and need not
# be: it only picks which CA signs a refusal, which anyone may have from any CA.
TYPED_LID_PREFIX = b"SETc"
_TYPED_LID_BYTES = len(TYPED_LID_PREFIX) + 1 + LID_CA_BYTES
_TYPED_CAS = frozenset({MERCHANT_CA, PAYMENT_GATEWAY_CA})

log = logging.getLogger(__name__)


def new_lid_ca(ca_type: int) -> bytes:
    """A fresh LID-CA of the Merchant or Payment Gateway CA (``lid_ca_type`` reads it)."""
    if ca_type not in _TYPED_CAS:
        raise ValueError(f"no typed LID-CA for CA type {ca_type}")
    return TYPED_LID_PREFIX + bytes([ca_type]) + new_id()[:LID_CA_BYTES]


def lid_ca_type(lid_ca: bytes) -> int | None:
    """The CA a LID-CA of ``new_lid_ca`` was made by; None for any other LID-CA."""
    if len(lid_ca) != _TYPED_LID_BYTES or not lid_ca.startswith(TYPED_LID_PREFIX):
        return None
    ca_type = lid_ca[len(TYPED_LID_PREFIX)]
    return ca_type if ca_type in _TYPED_CAS else None


def _opens_an_account(request: MerchantRequest) -> str | None:
    """The merchant ID whose settlement account an initial merchant request may open; None
    for a renewal (the live certificate's holder) or a gateway (no settlement account)."""
    if request.keys.renewed is not None or not isinstance(request.identity, MerchantIdentity):
        return None
    return request.identity.merchant_id


def _same_request(opening: tuple[bytes, bytes], rrpid: bytes, digest: bytes) -> bool:
    """The recorded opening is this request: its RRPID and the digest of its bytes."""
    recorded_rrpid, recorded_digest = opening
    return recorded_rrpid == rrpid and hmac.compare_digest(recorded_digest, digest)


class MerchantRegistrar:
    """Me-AqCInit and CertReq at the Merchant CA or the Payment Gateway CA."""

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

    def me_aq_c_init(
        self, request: registration_pb2.MeAqCInitRequest, kind: RequestKind, identity: Identity
    ) -> bytes:
        """Open a session with Chall-CA and the identity; answer with the form."""
        if kind.ca_type != self._side.ca_type:
            raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "request for another CA")
        plain = registration_pb2.MeAqCInitRequest()
        plain.CopyFrom(request)
        plain.ClearField("header")
        digest = request_digest(KIND_ME_AQ_C_INIT, plain.SerializeToString(deterministic=True))
        now = self._clock()
        subject_id, subject_name = identity.subject
        with self._store.write() as tx:
            stored = replayed(tx, request.rrpid, KIND_ME_AQ_C_INIT, digest)
            if stored is not None:
                return stored
            lid_ca, chall_ca = new_lid_ca(self._side.ca_type), new_id()
            tx.put_session(
                Session(
                    lid_ca, request.lid_ee, self._side.ca_type, request.request_type, chall_ca,
                    False, subject_id, subject_name, now, now + self._policy.session_lifetime_ms,
                )
            )  # fmt: skip
            body = build_me_aq_c_init_response(
                self._side.credentials, request, lid_ca, chall_ca,
                self._policy.form_for(self._side.ca_type), revocation=self._revocation(),
            )  # fmt: skip
            tx.put_response(request.rrpid, KIND_ME_AQ_C_INIT, digest, body, now)
        return body

    def cert(self, envelope: CertRequestEnvelope, digest: bytes) -> bytes:
        """Process a merchant or gateway CertReq (see the module docstring for the order)."""
        credentials = self._side.credentials
        now = self._clock()
        try:
            opened = self._open(envelope, digest, now)
        except ProtocolError as exc:
            if exc.code != ErrorCode.ERROR_CODE_DECRYPTION_FAILURE:
                raise
            log.info("merchant CertReq could not be opened: %s", exc.reason)
            return build_merchant_cert_response(
                credentials, decryption_error_answer(envelope.rrpid), DECRYPTION_ERROR,
                revocation=self._revocation(),
            )  # fmt: skip
        data = opened.data
        answer = CertAnswer(
            data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca, tuple(data.thumbs.thumbs)
        )

        def respond(status: int, certificates: tuple[bytes, ...] = ()) -> bytes:
            return build_merchant_cert_response(
                credentials, answer, status, revocation=self._revocation(),
                certificates=certificates,
            )  # fmt: skip

        try:
            request = verify_merchant_cert_request(opened, self._trust, at=now_utc(now))
        except ProtocolError as exc:
            refused = refusal_status(exc)
            if refused is None:
                raise
            log.info("merchant CertReq refused: %s", exc.reason)
            return respond(refused)
        if request.keys.kind.ca_type != self._side.ca_type:
            raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "request for another CA")
        if _opens_an_account(request) is not None:
            with self._store.write() as tx:
                stored = replayed(tx, data.rrpid, KIND_CERT, digest)
                if stored is not None:
                    return stored
                self._note_opening(tx, request, digest, now)
        with self._store.write() as tx:
            stored = replayed(tx, data.rrpid, KIND_CERT, digest)
            if stored is not None:
                return stored
            status, certificates = self._decide(tx, request, digest, now)
            if status != REQUEST_COMPLETE:
                self._forget_refused_opening(tx, request, digest, now)
            body = respond(status, certificates)
            if keeps_answer(status):
                tx.put_response(data.rrpid, KIND_CERT, digest, body, now)
        return body

    def _open(self, envelope: CertRequestEnvelope, digest: bytes, now: int) -> OpenedCertRequest:
        """Decrypt the CertReq, its RequestDate judged by the CA's clock unless these very
        bytes (RRPID and digest) are recorded in a live ``merchant_openings`` row: an
        initial request whose certification failed after its account may have been
        opened, resent while its session lasts (the module docstring)."""
        credentials = self._side.credentials
        with self._store.read() as tx:
            recorded = tx.opening_recorded(envelope.rrpid, digest, now)
        return open_merchant_cert_request(envelope, credentials, now=now, judge_date=not recorded)

    def _renews_same_subject(self, request: MerchantRequest) -> bool:
        renewed = request.keys.renewed
        if renewed is None:
            return True
        named = renewed.merchant_data.merchant_id if renewed.merchant_data else renewed.subject_id
        return named == request.identity.subject[0]

    def _names_a_live_subject(
        self, tx: StoreTransaction, request: MerchantRequest, now: int
    ) -> bool:
        # Only an initial request: a renewal proved possession of the live certificate's
        # key, and ``_renews_same_subject`` already bound it to the same merchant ID.
        if request.keys.renewed is not None:
            return False
        name = request.identity.subject[0]
        if not tx.holds_live_certificate(name, request.keys.kind.subject_type, now):
            return False
        # The operator's lead when a merchant asks why it cannot register: revoke, or renew.
        log.info("initial CertReq refused: %r holds live certificates", name)
        return True

    def _note_opening(
        self, tx: StoreTransaction, request: MerchantRequest, digest: bytes, now: int
    ) -> None:
        """Record an initial merchant request the acquirer would let in now, before the
        deciding transaction opens its account (the module docstring says why).

        Only a request of a live session, with its Chall-CA and identity, is recorded:
        one row per merchant ID, which a session names, and gone once that session has
        expired (the request cannot be certified after that). The row names the request
        recorded last, the only one whose decision may open the account: one it replaces
        is refused at its decision (``_takes_an_account_over``).
        """
        merchant_id = _opens_an_account(request)
        data = request.data
        session = tx.session(data.lid_ca)
        if (
            merchant_id is None
            or session is None
            or not session_valid(session, data.lid_ee, self._side.ca_type, now)
            or not challenge_matches(session, data.chall_ca, data.request_type)
            or request.identity.subject != (session.subject_id, session.subject_name)
        ):
            return
        tx.drop_expired_merchant_openings(now)
        if self._issuer.may_register_merchant(merchant_id, request.account):
            tx.put_merchant_opening(merchant_id, data.rrpid, digest, session.expires_ms)

    def _forget_refused_opening(
        self, tx: StoreTransaction, request: MerchantRequest, digest: bytes, now: int
    ) -> None:
        """Delete the ID's ``merchant_openings`` row when it names this refused request.

        The refusal is not stored (``replay``): a row left for the session's hour let
        these very bytes, replayed by anyone holding them, skip the judgement of their
        date and be certified once what refused them had changed (the ID's certificates
        revoked), though their merchant, told of the refusal, had discarded the request.
        No resend needs the row: a refusal opened no account, and one opened for these
        bytes by an earlier attempt gets them refused now only for what no resend
        changes (a used Chall-CA, a claimed key, an expired session). A row naming
        another request is left for that one.
        """
        merchant_id = _opens_an_account(request)
        if merchant_id is None:
            return
        opening = tx.merchant_opening(merchant_id, now)
        if opening is not None and _same_request(opening, request.data.rrpid, digest):
            tx.forget_merchant_opening(merchant_id)

    def _takes_an_account_over(
        self, tx: StoreTransaction, request: MerchantRequest, digest: bytes, now: int
    ) -> bool:
        """True when an initial merchant request must not have the ID's account: one the
        acquirer holds and the request does not name (but for the request the account
        was opened for), or one the decision would open while ``merchant_openings``
        names another request (recorded after this one, by another worker)."""
        merchant_id = _opens_an_account(request)
        if merchant_id is None:
            return False
        opening = tx.merchant_opening(merchant_id, now)
        own = opening is not None and _same_request(opening, request.data.rrpid, digest)
        if self._issuer.may_register_merchant(merchant_id, request.account):
            if own:
                return False
            # Opened now, the account would be this request's while the row names the
            # other, which would get in by it should this decision fail after opening it.
            log.info(
                "initial CertReq for %r refused: another request for the ID is under way",
                merchant_id,
            )
            return True
        if own:
            # Its certification failed after the account was opened for it.
            log.info(
                "initial CertReq for %r sent again: the account was opened for it", merchant_id
            )
            return False
        # The operator's lead: the merchant needs the account id the bank holds for it.
        log.info(
            "initial CertReq refused: the acquirer holds a settlement account for %r and"
            " the request's AcctData %s",
            merchant_id,
            "does not name it" if request.account is not None else "is missing",
        )
        return True

    def _decide(
        self, tx: StoreTransaction, request: MerchantRequest, digest: bytes, now: int
    ) -> tuple[int, tuple[bytes, ...]]:
        data = request.data
        refuse_revoked_renewal(tx, request.keys)
        session = tx.session(data.lid_ca)
        if session is None or not session_valid(session, data.lid_ee, self._side.ca_type, now):
            return CHALLENGE_MISMATCH, ()
        if not challenge_matches(session, data.chall_ca, data.request_type):
            return CHALLENGE_MISMATCH, ()
        subject = request.identity.subject
        if (
            data.brand_id != self._side.issuing.brand_id
            or subject != (session.subject_id, session.subject_name)
            or not self._renews_same_subject(request)
            or not fills_form(data, self._policy.form_for(self._side.ca_type))
            or self._names_a_live_subject(tx, request, now)
            or self._takes_an_account_over(tx, request, digest, now)
        ):
            return REJECTED_BY_AGENT, ()
        thumbs = request.keys.key_thumbs
        if len(set(thumbs)) != len(thumbs) or any(tx.key_claimed(t) for t in thumbs):
            return KEY_ALREADY_CERTIFIED, ()
        tx.use_challenge(data.lid_ca)
        certificates = self._issue(tx, request, now)
        cert_thumbs = tuple(thumbprint(der) for der in certificates)
        for key_thumb, cert_thumb in zip(thumbs, cert_thumbs, strict=True):
            tx.claim_key(key_thumb, data.rrpid, cert_thumb, now)
        tx.put_request(
            RequestRecord(
                rrpid=data.rrpid, lid_ee=data.lid_ee, lid_ca=data.lid_ca,
                ca_type=self._side.ca_type, request_type=data.request_type,
                status=REQUEST_COMPLETE, sig_spki=request.keys.signature_spki,
                enc_spki=request.keys.key_exchange_spki,
                kem=request.keys.kem.value if request.keys.kem else None,
                subject_id=subject[0], subject_name=subject[1],
                cert_thumbs=cert_thumbs,
            ),
            now,
        )  # fmt: skip
        if isinstance(request.identity, MerchantIdentity):
            # Its live certificates guard the ID from now on.
            tx.forget_merchant_opening(request.identity.merchant_id)
            self._issuer.merchant_registered(*subject)
        return REQUEST_COMPLETE, certificates

    def _issue(
        self, tx: StoreTransaction, request: MerchantRequest, now: int
    ) -> tuple[bytes, bytes]:
        keys, ca, at = request.keys, self._side.issuing, now_utc(now)
        if keys.key_exchange_key is None or keys.kem is None:
            raise ValueError("a merchant request without its key-exchange key")
        kem: KemAlgorithm = keys.kem
        name, display = request.identity.subject
        sig_use, kex_use = CertificateUsage.SIGNATURE, CertificateUsage.KEY_EXCHANGE
        if keys.kind.subject_type == MERCHANT:
            # The acquirer does not let merchants registered this way receive PANs.
            merchant = MerchantData(name, display, pan_allowed=False)
            sig = issue_merchant(ca, keys.signature_key, sig_use, merchant, at=at)
            kex = issue_merchant(ca, keys.key_exchange_key, kex_use, merchant, kem=kem, at=at)
        else:
            sig = issue_gateway(ca, keys.signature_key, sig_use, name, at=at)
            kex = issue_gateway(ca, keys.key_exchange_key, kex_use, name, kem=kem, at=at)
        for der in (sig, kex):
            record_certificate(tx, der, ca, at)
        return sig, kex

    def answer_inquiry(
        self, tx: StoreTransaction, record: RequestRecord, answer: CertAnswer
    ) -> bytes:
        """CertInqRes: the request's current state, signed."""
        complete = record.status == REQUEST_COMPLETE
        certificates = tx.certificate_ders(record.cert_thumbs) if complete else []
        return build_merchant_cert_response(
            self._side.credentials, answer, record.status, revocation=self._revocation(),
            certificates=tuple(certificates),
        )  # fmt: skip
