"""``ca.db``'s certificates and revocation: the brand's certificates, revocations, CRLs
and BrandCRLIdentifiers (the queries ``store.StoreTransaction`` offers on them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from gateway.ca.records import BciRecord, CrlRecord, IssuedCertificate

# Thumbprints are SHA-256 (32 bytes); the thumbs of a request's certificates or of a BCI's
# CRLs are stored joined in one column.
THUMB_BYTES = 32
# GetCertificates and similar lookups take at most this many thumbprints per query
# (SQLite's default limit on host parameters is far above; this bounds one answer).
MAX_LOOKUP = 64

_SELECT_CERTIFICATES = (
    "SELECT thumb, serial, issuer_thumb, certificate_type, usage, subject, der, "
    "not_after_ms, issued_ms FROM certificates WHERE "
)


def join_thumbs(thumbs: Sequence[bytes]) -> bytes:
    """Thumbprints as one column's value."""
    if any(len(t) != THUMB_BYTES for t in thumbs):
        raise ValueError("thumbprints are 32 bytes")
    return b"".join(thumbs)


def split_thumbs(joined: bytes) -> tuple[bytes, ...]:
    """The thumbprints ``join_thumbs`` joined."""
    return tuple(joined[i : i + THUMB_BYTES] for i in range(0, len(joined), THUMB_BYTES))


# The columns ``_issued`` reads, and the revocation beside each certificate: what the
# listings select, each with its own WHERE and order.
_LISTED = (
    "SELECT c.thumb, c.serial, c.issuer_thumb, c.certificate_type, c.usage, c.subject, "
    "c.der, c.not_after_ms, c.issued_ms, r.revoked_ms FROM certificates AS c "
    "LEFT JOIN revocations AS r ON r.cert_thumb = c.thumb "
)


class CertificateQueries:
    """Certificates, revocations, CRLs and BCIs, inside one transaction."""

    _db: sqlite3.Connection

    # -- certificates ---------------------------------------------------------------

    def add_certificate(self, c: IssuedCertificate) -> None:
        """Record a certificate of the brand."""
        self._db.execute(
            "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (c.thumb, format(c.serial, "x"), c.issuer_thumb, c.certificate_type, c.usage,
             c.subject, c.der, c.not_after_ms, c.issued_ms),
        )  # fmt: skip

    def _certificates(self, where: str, args: Sequence[object]) -> list[IssuedCertificate]:
        # ``where`` is one of this class's fixed clauses; values always go in as parameters.
        query = _SELECT_CERTIFICATES + where
        rows = self._db.execute(query, tuple(args)).fetchall()
        return [_issued(r) for r in rows]

    def certificate(self, thumb: bytes) -> IssuedCertificate | None:
        """The certificate with this thumbprint."""
        found = self._certificates("thumb = ?", (thumb,))
        return found[0] if found else None

    def certificates_by_serial(self, serial: int) -> list[IssuedCertificate]:
        """Certificates with this serial number (one, unless two CAs drew the same)."""
        return self._certificates("serial = ?", (format(serial, "x"),))

    def certificate_ders(self, thumbs: Sequence[bytes]) -> list[bytes]:
        """DER of the certificates among ``thumbs`` (unknown ones are left out)."""
        wanted = list(dict.fromkeys(thumbs))[:MAX_LOOKUP]
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        by_thumb = {c.thumb: c.der for c in self._certificates(f"thumb IN ({marks})", wanted)}
        return [by_thumb[t] for t in wanted if t in by_thumb]

    def holds_live_certificate(self, subject: str, certificate_type: int, now_ms: int) -> bool:
        """True when a certificate of this type, unexpired and unrevoked, names ``subject``."""
        # Answered from the index on (subject, certificate_type) (schema.ADDED_INDEXES).
        row = self._db.execute(
            "SELECT 1 FROM certificates AS c WHERE c.subject = ? AND c.certificate_type = ? "
            "AND c.not_after_ms >= ? "
            "AND NOT EXISTS (SELECT 1 FROM revocations AS r WHERE r.cert_thumb = c.thumb) "
            "LIMIT 1",
            (subject, certificate_type, now_ms),
        ).fetchone()
        return row is not None

    def listed_certificates(
        self, *, subject: str | None = None, live_at_ms: int | None = None
    ) -> Iterator[tuple[IssuedCertificate, int | None]]:
        """Certificates with their revocation time (None: not revoked), oldest first.

        Only those naming exactly ``subject`` when it is given; only the unexpired and
        unrevoked at ``live_at_ms`` when it is given. Rows are read as they are consumed
        (a bank holds a certificate per cardholder): consume them inside the transaction.
        """
        # With a subject, read through the index on it; without, every row (an operator's
        # occasional listing). A read-only open cannot add the index to a database made
        # before it: such a listing scans, as it always did.
        rows = self._db.execute(
            _LISTED + "WHERE (:subject IS NULL OR c.subject = :subject) "
            "AND (:now IS NULL OR (c.not_after_ms >= :now AND r.cert_thumb IS NULL)) "
            "ORDER BY c.issued_ms, c.rowid",
            {"subject": subject, "now": live_at_ms},
        )
        for r in rows:
            yield _issued(r), r[9]

    def recorded_after(
        self, thumb: bytes, *, subject: str
    ) -> Iterator[tuple[IssuedCertificate, int | None]]:
        """Certificates naming exactly ``subject`` recorded after the one with this
        thumbprint (all of them when ca.db records none), with their revocation time (None:
        not revoked), in the order they were recorded.

        By insertion order (rowid), never by ``issued_ms``: that is the recording host's
        clock, and a certificate recorded later on a host whose clock is behind (or after
        one recorded on a host whose clock was ahead) is stamped earlier. Rowids are never
        reused, as certificates are never deleted. Read as consumed, like
        ``listed_certificates``: consume them inside the transaction."""
        # Through the index on the subject; the thumbprint's rowid through its primary key.
        rows = self._db.execute(
            _LISTED + "WHERE c.subject = :subject AND c.rowid > "  # noqa: S608  fixed text
            "COALESCE((SELECT rowid FROM certificates WHERE thumb = :thumb), 0) "
            "ORDER BY c.rowid",
            {"subject": subject, "thumb": thumb},
        )
        for r in rows:
            yield _issued(r), r[9]

    # -- revocation -----------------------------------------------------------------

    def revoke(self, cert: IssuedCertificate, now_ms: int) -> None:
        """Record a revocation."""
        self._db.execute(
            "INSERT INTO revocations VALUES (?, ?, ?, ?)",
            (cert.thumb, cert.issuer_thumb, format(cert.serial, "x"), now_ms),
        )

    def is_revoked(self, thumb: bytes) -> bool:
        """True when the certificate ca.db records under this thumbprint was revoked.

        Only for a thumbprint read from ca.db, or one a validated chain vouches for: a
        certificate's twin has another (``serial_revoked`` answers for both).
        """
        row = self._db.execute(
            "SELECT 1 FROM revocations WHERE cert_thumb = ?", (thumb,)
        ).fetchone()
        return row is not None

    def serial_revoked(self, issuer_thumb: bytes, serial: int) -> bool:
        """True when the CA with this certificate thumbprint revoked this serial number:
        the certificate or its twin, as its CRL says (``setcore.pki.chain``)."""
        # Answered from the index on (issuer_thumb, serial) (schema.ADDED_INDEXES).
        row = self._db.execute(
            "SELECT 1 FROM revocations WHERE issuer_thumb = ? AND serial = ?",
            (issuer_thumb, format(serial, "x")),
        ).fetchone()
        return row is not None

    def revoked_by(self, issuer_thumb: bytes, ending_from_ms: int) -> list[tuple[int, int]]:
        """(serial, revoked at ms) of every certificate of one CA that was revoked and
        ends (notAfter) at ``ending_from_ms`` or later."""
        rows = self._db.execute(
            "SELECT r.serial, r.revoked_ms FROM revocations AS r "
            "JOIN certificates AS c ON c.thumb = r.cert_thumb "
            "WHERE r.issuer_thumb = ? AND c.not_after_ms >= ? ORDER BY r.rowid",
            (issuer_thumb, ending_from_ms),
        ).fetchall()
        return [(int(serial, 16), revoked_ms) for serial, revoked_ms in rows]

    def add_crl(self, crl: CrlRecord) -> None:
        """Record a newly issued CRL."""
        self._db.execute(
            "INSERT INTO crls VALUES (?, ?, ?, ?, ?, ?)",
            (crl.issuer_thumb, crl.crl_number, crl.thumb, crl.der, crl.next_update_ms,
             crl.issued_ms),
        )  # fmt: skip

    def latest_crl(self, issuer_thumb: bytes) -> CrlRecord | None:
        """The CA's CRL with the highest number."""
        row = self._db.execute(
            "SELECT * FROM crls WHERE issuer_thumb = ? ORDER BY crl_number DESC LIMIT 1",
            (issuer_thumb,),
        ).fetchone()
        return None if row is None else CrlRecord(*row)

    def crl_ders(self, thumbs: Sequence[bytes]) -> list[bytes]:
        """DER of the CRLs with these thumbprints, in that order."""
        wanted = list(thumbs)[:MAX_LOOKUP]
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT thumb, der FROM crls WHERE thumb IN ({marks})",  # noqa: S608 - fixed text
            wanted,
        ).fetchall()
        by_thumb = dict(rows)
        return [by_thumb[t] for t in wanted if t in by_thumb]

    def add_bci(self, bci: BciRecord) -> None:
        """Record a newly issued BrandCRLIdentifier."""
        self._db.execute(
            "INSERT INTO bcis VALUES (?, ?, ?, ?, ?)",
            (bci.sequence_num, bci.der, join_thumbs(bci.crl_thumbs), bci.not_after_ms,
             bci.issued_ms),
        )  # fmt: skip

    def latest_bci(self) -> BciRecord | None:
        """The BrandCRLIdentifier with the highest sequence number."""
        row = self._db.execute("SELECT * FROM bcis ORDER BY sequence_num DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return BciRecord(row[0], row[1], split_thumbs(row[2]), row[3], row[4])

    def latest_bci_sequence(self) -> int:
        """The highest BCI sequence number (0 when none was issued)."""
        row = self._db.execute("SELECT MAX(sequence_num) FROM bcis").fetchone()
        return int(row[0] or 0)


def _issued(row: Sequence[Any]) -> IssuedCertificate:
    """A row of ``certificates`` (its columns in table order) as a record."""
    thumb, serial, issuer, kind, usage, subject, der, not_after_ms, issued_ms = row[:9]
    return IssuedCertificate(
        thumb, int(serial, 16), issuer, kind, usage, subject, der, not_after_ms, issued_ms
    )
