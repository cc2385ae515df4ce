"""The certificate authority's own errors (the tree is in ``gateway.ca``'s docstring).

Protocol refusals are ``setcore.errors.ProtocolError`` and travel to the peer as signed
SET Errors; the errors here are about the CA itself and never reach a peer in detail.
"""

from __future__ import annotations


class CaError(Exception):
    """Base of every error the certificate authority raises about itself."""


class StoreError(CaError):
    """``ca.db`` cannot be used right now (locked too long, disk full, corrupt)."""


class SchemaMismatch(StoreError):
    """``ca.db`` was written by a schema version this code does not know."""


class UnknownCertificate(CaError):
    """No certificate of this CA matches the serial number or thumbprint given."""


class AlreadyRevoked(CaError):
    """The certificate was revoked before."""


class NotRevocable(CaError):
    """The certificate has no issuer whose CRL this CA publishes (the brand root)."""


class NoPendingRequest(CaError):
    """No pended request for these local ids."""
