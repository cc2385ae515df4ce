"""What the CA needs from the issuer and the acquirer: ``IssuerDirectory``.

The CA validates a cardholder's card with the issuer before it certifies anything
(SET-PROTOCOL.md 4.3 rule 5) and tells the acquirer's books about a newly certified
merchant. The bank wires this to its issuer ledger (``gateway.issuer.LedgerDirectory``,
which translates the ledger's outages into ``IssuerUnavailable``); tests use a small
in-memory one.
"""

from __future__ import annotations

from typing import Protocol

from setcore.pan import PAN


class IssuerDirectory(Protocol):
    """The issuer's answer about a card, and the acquirer's record of merchants."""

    def check_card(self, pan: PAN, expiry: str) -> int:
        """A ``setpay.v1.CertStatusCode`` for certifying this card.

        REQUEST_COMPLETE when the account exists, is active and ``expiry`` (YYYYMM) is the
        card's; UNKNOWN_ACCOUNT when there is no such account; REJECTED_BY_ISSUER when
        the account is not active or the expiry differs. REQUEST_PENDED means the issuer
        wants a person to decide first (the CA then waits for ``decide_pending``).
        ``IssuerUnavailable`` when the issuer cannot answer now: the request is answered
        UNAVAILABLE, never refused, and changes nothing.
        """
        ...

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        """Called at every certification of a merchant (initial or renewal), inside the
        CA's transaction before it commits: the certification may still fail after it, and
        a retry calls it again, so it must be idempotent. ``IssuerUnavailable`` when the
        acquirer's books cannot take it now: the certification is rolled back."""
        ...
