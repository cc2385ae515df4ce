"""The certificate authority's own errors (the tree is in ``gateway.ca``'s docstring).

Protocol refusals are ``setcore.errors.ProtocolError`` and travel to the peer as signed
SET Errors; the errors here are about the CA itself and never reach a peer in detail.
"""

from __future__ import annotations


class CaError(Exception):
    """Base of every error the certificate authority raises about itself."""


class CaUnavailable(CaError):
    """A part of the bank the CA relies on cannot serve right now: gRPC UNAVAILABLE.

    An outage of the bank's own parts is never a SET Error: a requester records an Error
    as a refusal, while UNAVAILABLE tells it to send the same bytes again later.
    """

    #: What is unavailable, as the gRPC status names it (never the cause's own words).
    what = "service"


class StoreError(CaUnavailable):
    """``ca.db`` cannot be used right now (locked past the busy timeout, an I/O error, the
    disk full, the file unreadable, corrupt or closed): retrying later can succeed."""

    what = "database"


class StoreBusy(StoreError):
    """``ca.db``'s write lock was held by another connection past the busy timeout
    (SQLITE_BUSY: ``setpay ca revoke``, another worker's long write, an operator's shell):
    a fault that passes once it lets go (``gateway.sqlite_errors.held_by_another``).

    Its own class for a worker's start: a replacement meeting it as it opens ``ca.db``
    (its BEGIN IMMEDIATE) is started again (``gateway.child.PASSING_FAULTS``), while one
    meeting any other StoreError (a damaged or missing ca.db) stops the bank. Taken for
    lasting, a revocation run as a worker was replaced stopped the whole bank. A request
    meeting it is answered UNAVAILABLE as any StoreError."""


class SchemaMismatch(StoreError):
    """``ca.db`` was written by a schema version this code does not know."""


class StoreBug(CaError):
    """``ca.db`` refused a statement as wrong: a bug of this code, not an outage.

    SQLite's verdict on the statement itself (no such table or column, a parameter of the
    wrong number or type, a transaction begun inside another, the library misused) is
    the same for the same request every time: retrying cannot help, and the servicer
    answers it as the bug it is.
    """


class ConstraintViolation(StoreBug):
    """``ca.db`` refused a change that breaks one of its constraints: a bug, not an outage.

    Every check a change depends on (a stored answer for the RRPID, a claimed key, the
    next CRL or BCI number) is made in the write transaction that makes the change, and
    writers are serialized (BEGIN IMMEDIATE), so no race between requests or processes
    reaches a constraint; the values the CA draws itself (LID-CA, serial numbers) are
    random. Retrying cannot help: the servicer answers it as the bug it is.
    """


class IssuerUnavailable(CaUnavailable):
    """The issuer (its ledger) cannot say now whether a card or merchant is known."""

    what = "issuer"


class RevocationStale(CaUnavailable):
    """The revocation data held is no longer current and could not be renewed.

    Certificates cannot be judged without it: nothing is answered until a refresh
    succeeds (``gateway.ca.watcher``).
    """

    what = "revocation data"


class CaCertificateUnusable(CaUnavailable):
    """The answering CA's own certificate or key-exchange certificate is revoked or has
    expired: no requester would trust what it signs, or should seal to it. Answered
    UNAVAILABLE, never a SET Error (the CA would sign that too); the log names what the
    operator must do."""

    what = "certificate"


class UnknownCertificate(CaError):
    """No certificate of this CA matches the serial number or thumbprint given."""


class AlreadyRevoked(CaError):
    """The certificate was revoked before."""


class NotRevocable(CaError):
    """The certificate has no issuer whose CRL this CA publishes (the brand root)."""


class NoPendingRequest(CaError):
    """No pended request for these local ids."""
