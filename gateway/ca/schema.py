"""The schema of ``ca.db`` (version 1); ``gateway.ca.store`` describes each table.

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

# Indexes that only speed queries up: created at every writable open, so a version-1
# database made before them gains them without a new schema version (an index changes
# no record's meaning). A merchant's or gateway's initial registration asks whether its
# ID already holds a live certificate; without the first, that read every certificate
# row. Every renewal asks, holding the write lock, whether its CA revoked the renewed
# certificate's serial; without the second, that read every revocation of that CA.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS certificates_by_subject "
    "ON certificates (subject, certificate_type)",
    "CREATE INDEX IF NOT EXISTS revocations_by_serial ON revocations (issuer_thumb, serial)",
)
