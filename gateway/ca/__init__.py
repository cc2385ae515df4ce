"""The brand's certificate authority: Cardholder, Merchant and Payment Gateway CAs.

    authority    CertificateAuthority: the CAs behind one door (plain Python)
    cardholder   the Cardholder CA's decisions (sessions, Chall-CA, the issuer, issuing)
    merchant     the Merchant and Payment Gateway CAs' decisions
    issuer       IssuerDirectory: what the CA asks the issuer and tells the acquirer
    keys         AuthorityKeys: the root and the three CAs' keys and certificates
    policy       CaPolicy: forms and lifetimes
    store        ca.db (SQLite, WAL, synchronous=FULL): opening, transactions, errors;
                 its queries by domain in registration_store and certificate_store;
                 schema, records
    replay       RRPID idempotency
    publishing   CRLs and BrandCRLIdentifiers after revocations and before they lapse
    watcher      RevocationWatcher: ca.db's newest BCI into a process's TrustStore
    servicer     the thin gRPC servicer

Errors:

    setcore.errors.ProtocolError   the request cannot be processed: a signed SET Error
                                   (business outcomes are CertStatusCodes in CertRes)
    CaError                        about the CA itself, never sent to a peer in detail
    ├── CaUnavailable              a part of the bank is away: the servicers (the CA's and
    │   │                          the gateway's) answer UNAVAILABLE, never a SET Error
    │   ├── StoreError             ca.db unusable now: busy, I/O, disk full, corrupt
    │   │   │                      (sqlite3 errors by result code, translated once in
    │   │   │                      ``store``)
    │   │   ├── StoreBusy          ca.db's write lock held by another past the busy
    │   │   │                      timeout: passes once it lets go
    │   │   └── SchemaMismatch     ca.db of another schema version
    │   ├── IssuerUnavailable      the issuer ledger cannot answer now (translated from the
    │   │                          ledger's StoreUnavailable in ``gateway.issuer``)
    │   ├── RevocationStale        the revocation data held is no longer current and the
    │   │                          refresh keeps failing (``watcher``)
    │   └── CaCertificateUnusable  the answering CA's own certificate or key-exchange
    │                              certificate is revoked or expired (``authority``)
    ├── StoreBug                   ca.db refused a statement (no such table or column,
    │   │                          a wrong parameter, a nested BEGIN, misuse; translated
    │   │                          in ``store``): a bug, never an outage; the servicer
    │   │                          answers it as one
    │   └── ConstraintViolation    ca.db refused a change (SQLITE_CONSTRAINT)
    ├── UnknownCertificate         revoke: no such serial number or thumbprint
    ├── AlreadyRevoked             revoke: revoked before
    ├── NotRevocable               revoke: the brand root (no CRL covers it)
    └── NoPendingRequest           decide_pending: nothing pended for those ids

Errors of the key backend (``hsm.errors.KeyBackendError``) pass through unchanged; the
servicer answers them as the gateway does: ``TransientBackendError`` with UNAVAILABLE,
any other (a key deleted, the PIN refused) as a failure retrying cannot fix.
"""

from gateway.ca.authority import CertificateAuthority
from gateway.ca.errors import (
    AlreadyRevoked,
    CaCertificateUnusable,
    CaError,
    CaUnavailable,
    ConstraintViolation,
    IssuerUnavailable,
    NoPendingRequest,
    NotRevocable,
    RevocationStale,
    SchemaMismatch,
    StoreBug,
    StoreError,
    UnknownCertificate,
)
from gateway.ca.issuer import IssuerDirectory
from gateway.ca.keys import AuthorityKeys, CaSide
from gateway.ca.policy import CaPolicy
from gateway.ca.publishing import current_revocation, publish_initial, refresh, revoke
from gateway.ca.records import IssuedCertificate
from gateway.ca.servicer import CertificateAuthorityServicer
from gateway.ca.store import CaStore
from gateway.ca.watcher import RevocationWatcher

__all__ = [
    "AlreadyRevoked",
    "AuthorityKeys",
    "CaCertificateUnusable",
    "CaError",
    "CaPolicy",
    "CaSide",
    "CaStore",
    "CaUnavailable",
    "CertificateAuthority",
    "CertificateAuthorityServicer",
    "ConstraintViolation",
    "IssuedCertificate",
    "IssuerDirectory",
    "IssuerUnavailable",
    "NoPendingRequest",
    "NotRevocable",
    "RevocationStale",
    "RevocationWatcher",
    "SchemaMismatch",
    "StoreBug",
    "StoreError",
    "UnknownCertificate",
    "current_revocation",
    "publish_initial",
    "refresh",
    "revoke",
]
