"""The schema of ``ca.db`` (version 1); ``gateway.ca.store`` describes each table (and
``ADDED_TABLES`` those added since).

A database written by another version is refused at open (``SchemaMismatch``) rather than
guessed at: the CA's records decide which keys were certified, so they are not migrated
silently.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE sessions (
        lid_ca BLOB PRIMARY KEY,
        lid_ee BLOB NOT NULL,
        ca_type INTEGER NOT NULL,
        request_type INTEGER NOT NULL,
        chall_ca BLOB,
        chall_used INTEGER NOT NULL DEFAULT 0,
        subject_id TEXT NOT NULL DEFAULT '',
        subject_name TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL)""",
    """CREATE TABLE responses (
        rrpid BLOB PRIMARY KEY,
        kind TEXT NOT NULL,
        request_digest BLOB NOT NULL,
        response BLOB NOT NULL,
        created_ms INTEGER NOT NULL)""",
    """CREATE TABLE requests (
        rrpid BLOB PRIMARY KEY,
        lid_ee BLOB NOT NULL,
        lid_ca BLOB NOT NULL,
        ca_type INTEGER NOT NULL,
        request_type INTEGER NOT NULL,
        status INTEGER NOT NULL,
        sig_spki BLOB NOT NULL,
        enc_spki BLOB,
        kem TEXT,
        blinded_account BLOB,
        card_expiry TEXT,
        nonce_cca BLOB,
        back_key BLOB,
        subject_id TEXT NOT NULL DEFAULT '',
        subject_name TEXT NOT NULL DEFAULT '',
        cert_thumbs BLOB NOT NULL DEFAULT x'',
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL)""",
    "CREATE INDEX requests_by_session ON requests (lid_ee, lid_ca, created_ms)",
    """CREATE TABLE certificates (
        thumb BLOB PRIMARY KEY,
        serial TEXT NOT NULL,
        issuer_thumb BLOB NOT NULL,
        certificate_type INTEGER NOT NULL,
        usage TEXT NOT NULL,
        subject TEXT NOT NULL,
        der BLOB NOT NULL,
        not_after_ms INTEGER NOT NULL,
        issued_ms INTEGER NOT NULL,
        UNIQUE (issuer_thumb, serial))""",
    "CREATE INDEX certificates_by_serial ON certificates (serial)",
    """CREATE TABLE certified_keys (
        key_thumb BLOB PRIMARY KEY,
        request_rrpid BLOB,
        cert_thumb BLOB,
        claimed_ms INTEGER NOT NULL)""",
    """CREATE TABLE revocations (
        cert_thumb BLOB PRIMARY KEY REFERENCES certificates (thumb),
        issuer_thumb BLOB NOT NULL,
        serial TEXT NOT NULL,
        revoked_ms INTEGER NOT NULL)""",
    "CREATE INDEX revocations_by_issuer ON revocations (issuer_thumb)",
    """CREATE TABLE crls (
        issuer_thumb BLOB NOT NULL,
        crl_number INTEGER NOT NULL,
        thumb BLOB NOT NULL UNIQUE,
        der BLOB NOT NULL,
        next_update_ms INTEGER NOT NULL,
        issued_ms INTEGER NOT NULL,
        PRIMARY KEY (issuer_thumb, crl_number))""",
    """CREATE TABLE bcis (
        sequence_num INTEGER PRIMARY KEY,
        der BLOB NOT NULL,
        crl_thumbs BLOB NOT NULL,
        not_after_ms INTEGER NOT NULL,
        issued_ms INTEGER NOT NULL)""",
)

# Tables added to version 1: created at every writable open (before ``ADDED_INDEXES``), so
# a version-1 database made before them gains them empty without a new schema version.
# None changes the meaning of a record written before it: an empty ``card_failures`` is a
# card refused nowhere yet; a pended renewal without its ``pended_renewals`` row is one
# made before this table, which ``CardholderRegistrar.decide_pending`` refuses (it cannot
# tell whether the renewed certificate was revoked since); an empty ``merchant_openings``
# is no merchant registration under way.
#
#     card_failures      refused cardholder registrations per card, under the issuer's
#                        keyed hash of the card number (never the number): how many since
#                        the count began (``window_start_ms``: its first refusal), and
#                        until when the card is refused outright; a row is deleted once
#                        it has run out (``expires_ms``: ``gateway.ca.card_failures``)
#     pended_renewals    for a pended cardholder renewal, the renewed certificate as its
#                        CRL names it (issuer thumbprint and serial) and the thumbprints of
#                        the CAs above it, so the decision can refuse one revoked meanwhile
#     merchant_openings  per merchant ID, the initial request (RRPID and digest of its
#                        bytes) last allowed to open the acquirer's settlement account for
#                        it, recorded before the account is opened: that request, resent
#                        after its certification failed, gets in although the account now
#                        exists (``gateway.ca.merchant``); deleted when a request under the
#                        ID is certified or the request it names is refused, or once its
#                        session has expired (``expires_ms``); every merchant or gateway
#                        CertReq looks its RRPID up in it (``merchant_openings_by_rrpid``:
#                        without it, that read every live row), and like every index here
#                        it is created at open in a database made before it
ADDED_TABLES = (
    """CREATE TABLE IF NOT EXISTS card_failures (
        card_key BLOB PRIMARY KEY,
        failures INTEGER NOT NULL,
        window_start_ms INTEGER NOT NULL,
        locked_until_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS card_failures_by_expiry ON card_failures (expires_ms)",
    """CREATE TABLE IF NOT EXISTS pended_renewals (
        rrpid BLOB PRIMARY KEY,
        serial TEXT NOT NULL,
        chain_thumbs BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS merchant_openings (
        merchant_id TEXT PRIMARY KEY,
        rrpid BLOB NOT NULL,
        request_digest BLOB NOT NULL,
        expires_ms INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS merchant_openings_by_expiry ON merchant_openings (expires_ms)",
    "CREATE INDEX IF NOT EXISTS merchant_openings_by_rrpid ON merchant_openings (rrpid)",
)

# Indexes on version-1 tables that only speed queries up: created at every writable open,
# so a version-1 database made before them gains them without a new schema version (an
# index changes no record's meaning). A merchant's or gateway's initial registration asks
# whether its ID already holds a live certificate; without the first, that read every
# certificate row. Every renewal asks, holding the write lock, whether its CA revoked the
# renewed certificate's serial; without the second, that read every revocation of that CA.
ADDED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS certificates_by_subject "
    "ON certificates (subject, certificate_type)",
    "CREATE INDEX IF NOT EXISTS revocations_by_serial ON revocations (issuer_thumb, serial)",
)
