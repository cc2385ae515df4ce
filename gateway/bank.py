"""The bank's running state: what every gateway request handler is given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.ledger import Ledger
from setcore.credentials import Credentials
from setcore.pki.truststore import TrustStore
from setcore.token_seal import TokenKey


@dataclass(frozen=True)
class Bank:
    """The gateway's keys and certificates, its trust store and the issuer ledger."""

    credentials: Credentials
    trust: TrustStore
    token_key: TokenKey
    ledger: Ledger
    gateway_chain: tuple[bytes, ...] = ()
    #: Picks up revocations published by the CA (``setpay ca revoke`` in another process);
    #: cheap, rate-limited inside. None when the trust store is fed some other way.
    refresh_revocation: Callable[[], object] | None = None
