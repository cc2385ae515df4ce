"""What the CA needs from the issuer and the acquirer: ``IssuerDirectory``.

The CA validates a cardholder's card with the issuer before it certifies anything
(SET-PROTOCOL.md 4.3 rule 5), asks the acquirer whether a merchant's initial request may
have the merchant ID it names, and tells the acquirer's books about a newly certified
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
        the account is not active or the expiry differs. The CA logs which, and answers
        the requester REJECTED_BY_ISSUER for all three: told apart, they would say which
        card numbers exist and, one month at a time, their expiry. REQUEST_PENDED means
        the issuer wants a person to decide first (the CA then waits for
        ``decide_pending``).
        ``IssuerUnavailable`` when the issuer cannot answer now: the request is answered
        UNAVAILABLE, never refused, and changes nothing.
        """
        ...

    def card_key(self, pan: PAN) -> bytes:
        """A keyed hash of the card number (the same for every call, at most 64 bytes),
        under which the CA counts the card's refused registrations
        (``gateway.ca.card_failures``). Its key is not the CA's: ``ca.db`` keeps the hash,
        and without the key a card number cannot be found from it by trying every number
        of a BIN."""
        ...

    def may_register_merchant(self, merchant_id: str, account: str | None) -> bool:
        """Whether an initial registration may be certified under ``merchant_id``.

        True when the acquirer holds no settlement account for the ID (the registration
        then opens one), or when ``account``, the request's AcctData, names the one it
        holds; False otherwise: the ID is taken, and certificates under it would settle
        into that account. Not asked for renewals (the requester proved possession of a
        live certificate of the ID). The request that opened the account, resent after its
        certification failed, is let in by the CA although this answers False for it
        (``gateway.ca.merchant``). ``IssuerUnavailable`` when the acquirer cannot look
        now: the request is answered UNAVAILABLE and changes nothing.
        """
        ...

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        """Called at every certification of a merchant (initial or renewal), inside the
        CA's transaction before it commits: the certification may still fail after it, and
        a retry calls it again, so it must be idempotent. ``IssuerUnavailable`` when the
        acquirer's books cannot take it now: the certification is rolled back."""
        ...
