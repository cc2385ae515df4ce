"""The bank's running state: what every gateway request handler is given."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.ledger import Ledger
from gateway.opening_keys import OpeningKeys
from setcore.credentials import Credentials
from setcore.frozen_copy import with_field
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
    #: The moment (Unix ms) a request's date and certificates are checked as of; None:
    #: each check reads the clock. The servicer fixes it once per request, and the
    #: handlers give it to the ledger, which keeps it with the decision. A decision whose
    #: answer was never stored (the gateway failed in between, see
    #: ``gateway.ledger.idempotency``) is answered later by the same checks as of the
    #: same moment.
    as_of_ms: int | None = None
    #: The key-exchange keys envelopes may be sealed to, older ones kept after a renewal
    #: (``gateway.opening_keys``); None: ``credentials``' alone.
    opening: OpeningKeys | None = None

    def as_of(self, moment_ms: int) -> Bank:
        """This bank checking requests as of ``moment_ms`` (Unix ms).

        Made once per request: a shallow copy with the one field set
        (``setcore.frozen_copy``), not ``dataclasses.replace``, which runs ``__init__``
        again for nothing: ``Bank`` has no ``__post_init__``, no field outside
        ``__init__`` and nothing cached from ``as_of_ms`` (tests/gateway/
        test_bank_as_of.py keeps it so; if that changes, go back to ``replace``).
        """
        return with_field(self, "as_of_ms", moment_ms)

    def opening_credentials(self) -> Credentials:
        """``credentials`` opening each envelope with the key-exchange key of the
        certificate it is sealed to, if the bank holds it and it is still valid as of
        ``as_of_time``; else with the newest (``OpeningKeys.key_exchange_for``). Their
        opener raises ``gateway.opening_keys.RecipientNotLoaded`` for an envelope sealed
        to a live certificate of the bank that this process does not hold."""
        if self.opening is None:
            return self.credentials
        # Bound to this request's moment; the newest key is ``credentials``' own, so
        # credentials swapped in (``dataclasses.replace``) never open with a stale copy.
        choose = functools.partial(
            self.opening.key_exchange_for, self.credentials, self.trust, self.as_of_time
        )
        return self.credentials.choosing_key_exchange(choose)

    @property
    def as_of_time(self) -> datetime | None:
        """``as_of_ms`` as the time certificates are checked at (None: now)."""
        if self.as_of_ms is None:
            return None
        return datetime.fromtimestamp(self.as_of_ms / 1000, UTC)
