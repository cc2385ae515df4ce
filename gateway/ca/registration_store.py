"""``ca.db``'s registrations: sessions, stored answers, decided requests, claimed keys,
refused cards, pended renewals and merchant account openings (the queries
``store.StoreTransaction`` offers on them)."""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Sequence

from gateway.ca.certificate_store import join_thumbs, split_thumbs
from gateway.ca.records import (
    CardFailures,
    PendedRenewal,
    RequestRecord,
    Session,
    StoredResponse,
)


class RegistrationQueries:
    """Sessions, answers, requests and keys, inside one transaction."""

    _db: sqlite3.Connection

    # -- sessions -------------------------------------------------------------------

    def put_session(self, s: Session) -> None:
        """Record a new registration session."""
        self._db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.lid_ca, s.lid_ee, s.ca_type, s.request_type, s.chall_ca, int(s.chall_used),
             s.subject_id, s.subject_name, s.created_ms, s.expires_ms),
        )  # fmt: skip

    def session(self, lid_ca: bytes) -> Session | None:
        """The session with this LID-CA."""
        row = self._db.execute("SELECT * FROM sessions WHERE lid_ca = ?", (lid_ca,)).fetchone()
        if row is None:
            return None
        return Session(
            row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7], row[8], row[9]
        )

    def set_challenge(self, lid_ca: bytes, chall_ca: bytes, request_type: int) -> None:
        """Issue the session's Chall-CA; one already issued (used or not) is never replaced.

        A RegFormReq anyone can send must not spoil the CertReq the wallet is about to make
        nor re-open a decided registration (``cardholder.reg_form_challenge``).
        """
        self._db.execute(
            "UPDATE sessions SET chall_ca = ?, request_type = ? "
            "WHERE lid_ca = ? AND chall_ca IS NULL",
            (chall_ca, request_type, lid_ca),
        )

    def use_challenge(self, lid_ca: bytes) -> None:
        """Mark the session's Chall-CA used: it answers one decided request only."""
        self._db.execute("UPDATE sessions SET chall_used = 1 WHERE lid_ca = ?", (lid_ca,))

    # -- responses ------------------------------------------------------------------

    def response(self, rrpid: bytes) -> StoredResponse | None:
        """The answer already given under ``rrpid``."""
        row = self._db.execute(
            "SELECT kind, request_digest, response FROM responses WHERE rrpid = ?", (rrpid,)
        ).fetchone()
        return None if row is None else StoredResponse(row[0], row[1], row[2])

    def put_response(
        self, rrpid: bytes, kind: str, request_digest: bytes, response: bytes, now_ms: int
    ) -> None:
        """Keep an answer so that a retry gets the same bytes."""
        self._db.execute(
            "INSERT INTO responses VALUES (?, ?, ?, ?, ?)",
            (rrpid, kind, request_digest, response, now_ms),
        )

    # -- requests -------------------------------------------------------------------

    def request_decided(self, rrpid: bytes) -> bool:
        """True when ca.db keeps a decided certificate request under ``rrpid``: for good,
        whatever its status (certified, pended, or refused once pended, or refused by an
        earlier version of the CA, which kept refusals too); a cardholder's refusal is kept
        now only as its stored answer."""
        row = self._db.execute("SELECT 1 FROM requests WHERE rrpid = ?", (rrpid,)).fetchone()
        return row is not None

    def put_request(self, r: RequestRecord, now_ms: int) -> None:
        """Record a decided certificate request."""
        self._db.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.rrpid, r.lid_ee, r.lid_ca, r.ca_type, r.request_type, r.status, r.sig_spki,
             r.enc_spki, r.kem, r.blinded_account, r.card_expiry, r.nonce_cca, r.back_key,
             r.subject_id, r.subject_name, join_thumbs(r.cert_thumbs), now_ms, now_ms),
        )  # fmt: skip

    def update_request(
        self, rrpid: bytes, status: int, cert_thumbs: Sequence[bytes], now_ms: int
    ) -> None:
        """Record the final decision on a pended request."""
        self._db.execute(
            "UPDATE requests SET status = ?, cert_thumbs = ?, updated_ms = ? WHERE rrpid = ?",
            (status, join_thumbs(cert_thumbs), now_ms, rrpid),
        )

    def latest_request(self, lid_ee: bytes, lid_ca: bytes) -> RequestRecord | None:
        """The newest decided request of a registration (what CertInq asks about)."""
        row = self._db.execute(
            "SELECT * FROM requests WHERE lid_ee = ? AND lid_ca = ? "
            "ORDER BY created_ms DESC, rowid DESC LIMIT 1",
            (lid_ee, lid_ca),
        ).fetchone()
        if row is None:
            return None
        return RequestRecord(
            rrpid=row[0], lid_ee=row[1], lid_ca=row[2], ca_type=row[3], request_type=row[4],
            status=row[5], sig_spki=row[6], enc_spki=row[7], kem=row[8],
            blinded_account=row[9], card_expiry=row[10], nonce_cca=row[11], back_key=row[12],
            subject_id=row[13], subject_name=row[14], cert_thumbs=split_thumbs(row[15]),
        )  # fmt: skip

    # -- keys -----------------------------------------------------------------------

    def key_claimed(self, key_thumb: bytes) -> bool:
        """True when a request already claimed (or got certified) this public key."""
        row = self._db.execute(
            "SELECT 1 FROM certified_keys WHERE key_thumb = ?", (key_thumb,)
        ).fetchone()
        return row is not None

    def claim_key(
        self, key_thumb: bytes, rrpid: bytes | None, cert_thumb: bytes | None, now_ms: int
    ) -> None:
        """Record that this key is taken; the primary key makes a second claim fail."""
        self._db.execute(
            "INSERT INTO certified_keys VALUES (?, ?, ?, ?)",
            (key_thumb, rrpid, cert_thumb, now_ms),
        )

    def certify_key(self, key_thumb: bytes, cert_thumb: bytes) -> None:
        """Attach the certificate to a claimed key (a pended request got issued)."""
        self._db.execute(
            "UPDATE certified_keys SET cert_thumb = ? WHERE key_thumb = ?",
            (cert_thumb, key_thumb),
        )

    # -- refused cards --------------------------------------------------------------

    def card_failures(self, card_key: bytes) -> CardFailures | None:
        """The refusals counted against a card (by the issuer's keyed hash of its number)."""
        row = self._db.execute(
            "SELECT failures, window_start_ms, locked_until_ms FROM card_failures "
            "WHERE card_key = ?",
            (card_key,),
        ).fetchone()
        return None if row is None else CardFailures(row[0], row[1], row[2])

    def put_card_failures(self, card_key: bytes, counted: CardFailures, expires_ms: int) -> None:
        """Record a card's refusals, to be forgotten at ``expires_ms``."""
        self._db.execute(
            "INSERT OR REPLACE INTO card_failures VALUES (?, ?, ?, ?, ?)",
            (card_key, counted.failures, counted.window_start_ms, counted.locked_until_ms,
             expires_ms),
        )  # fmt: skip

    def forget_card_failures(self, card_key: bytes) -> None:
        """A card registered: its earlier refusals no longer count."""
        self._db.execute("DELETE FROM card_failures WHERE card_key = ?", (card_key,))

    def drop_expired_card_failures(self, now_ms: int) -> None:
        """Forget every card whose count and refusal period have both run out."""
        self._db.execute("DELETE FROM card_failures WHERE expires_ms <= ?", (now_ms,))

    # -- pended renewals ------------------------------------------------------------

    def put_pended_renewal(self, rrpid: bytes, renewed: PendedRenewal) -> None:
        """Keep the certificate a pended renewal renews, for its decision."""
        self._db.execute(
            "INSERT INTO pended_renewals VALUES (?, ?, ?)",
            (rrpid, format(renewed.serial, "x"), join_thumbs(renewed.chain_thumbs)),
        )

    def pended_renewal(self, rrpid: bytes) -> PendedRenewal | None:
        """The certificate the pended renewal ``rrpid`` renews (None: not recorded)."""
        row = self._db.execute(
            "SELECT serial, chain_thumbs FROM pended_renewals WHERE rrpid = ?", (rrpid,)
        ).fetchone()
        return None if row is None else PendedRenewal(int(row[0], 16), split_thumbs(row[1]))

    def forget_pended_renewal(self, rrpid: bytes) -> None:
        """The pended renewal was decided: its renewed certificate is no longer needed."""
        self._db.execute("DELETE FROM pended_renewals WHERE rrpid = ?", (rrpid,))

    # -- merchant account openings --------------------------------------------------

    def put_merchant_opening(
        self, merchant_id: str, rrpid: bytes, request_digest: bytes, expires_ms: int
    ) -> None:
        """Record the request about to open the acquirer's account for ``merchant_id``
        (replacing any earlier one), to be forgotten at ``expires_ms``.

        Replacing a live row is safe: only the request the row names may open the account
        (``merchant.MerchantRegistrar._takes_an_account_over``), so the request it named
        before is refused at its decision, unless it has already opened the account, in
        which case no request that does not name the account can be recorded over it."""
        self._db.execute(
            "INSERT OR REPLACE INTO merchant_openings VALUES (?, ?, ?, ?)",
            (merchant_id, rrpid, request_digest, expires_ms),
        )

    def merchant_opening(self, merchant_id: str, now_ms: int) -> tuple[bytes, bytes] | None:
        """The RRPID and request digest last recorded for ``merchant_id``, unless expired.

        A row lives as long as its session, to its last millisecond included
        (``cardholder.session_valid``): one read as gone while its session still let the
        request in refused a lone registration as if another were under way."""
        row = self._db.execute(
            "SELECT rrpid, request_digest FROM merchant_openings "
            "WHERE merchant_id = ? AND expires_ms >= ?",
            (merchant_id, now_ms),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def opening_recorded(self, rrpid: bytes, request_digest: bytes, now_ms: int) -> bool:
        """True when an unexpired opening row names this RRPID and request digest: these
        very bytes were recorded about to open an account (``merchant`` module docstring).

        Asked before every merchant or gateway CertReq is opened: the rows are found by
        RRPID (``merchant_openings_by_rrpid``), not by reading every live one."""
        rows = self._db.execute(
            "SELECT request_digest FROM merchant_openings WHERE rrpid = ? AND expires_ms >= ?",
            (rrpid, now_ms),
        ).fetchall()
        return any(hmac.compare_digest(row[0], request_digest) for row in rows)

    def forget_merchant_opening(self, merchant_id: str) -> None:
        """A request under ``merchant_id`` was certified: its certificates guard the ID."""
        self._db.execute("DELETE FROM merchant_openings WHERE merchant_id = ?", (merchant_id,))

    def drop_expired_merchant_openings(self, now_ms: int) -> None:
        """Forget every opening whose request's session has expired (not one in its last
        millisecond, which ``merchant_opening`` still reads)."""
        self._db.execute("DELETE FROM merchant_openings WHERE expires_ms < ?", (now_ms,))
