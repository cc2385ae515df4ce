"""The issuer side of the bank: opening the ledger from the configuration, the ledger keys
file, and the directory the CA asks whether a card or merchant exists."""

from __future__ import annotations

import hmac
import json
import logging
import os
from pathlib import Path

from gateway.bank_pki import BankIncomplete
from gateway.ca.errors import IssuerUnavailable
from gateway.config import DEFAULT_SETTLEMENT_CURRENCY, BankConfig
from gateway.ledger import (
    AccountExists,
    AccountStatus,
    CommitObserver,
    InvalidRequest,
    Ledger,
    LedgerConfig,
    LedgerKeys,
    LedgerStore,
    PostgresLedgerStore,
    RemoteLedgerStore,
    SqliteLedgerStore,
    StoreUnavailable,
    UnknownAccount,
    UnknownMerchant,
)
from setcore.pan import PAN
from setpay.v1 import registration_pb2

log = logging.getLogger("setpay.issuer")


def write_ledger_keys(path: Path) -> None:
    """Create the two 32-byte ledger keys in a new file readable by the owner only."""
    keys = {"data_key": os.urandom(32).hex(), "index_key": os.urandom(32).hex()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f)
        f.flush()
        os.fsync(f.fileno())


def read_ledger_keys(path: Path) -> LedgerKeys:
    """Load the ledger keys; the file must not be readable by group or others.

    ``BankIncomplete`` names a file that is not what ``write_ledger_keys`` wrote; the
    message never holds the file's content.
    """
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} must be readable by its owner only (chmod 600)")
    try:
        raw = json.loads(path.read_bytes())
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        return LedgerKeys(
            data_key=bytes.fromhex(raw["data_key"]), index_key=bytes.fromhex(raw["index_key"])
        )
    except (ValueError, KeyError, TypeError, InvalidRequest) as exc:
        # Not chained: a parser's message may quote what it read.
        raise BankIncomplete(f"{path} is not a ledger keys file ({type(exc).__name__})") from None


def open_store(config: BankConfig, observer: CommitObserver | None = None) -> LedgerStore:
    """The ledger store the configuration names (SQLite file or PostgreSQL URL), reporting
    each commit to ``observer`` (metrics)."""
    url = config.ledger_url()
    if url.startswith("sqlite:"):
        return SqliteLedgerStore(url[len("sqlite:") :], observer=observer)
    return PostgresLedgerStore(url, observer=observer)


def open_ledger(
    config: BankConfig,
    observer: CommitObserver | None = None,
    *,
    service: str | None = None,
) -> Ledger:
    """The issuer ledger of this bank (commits reported to ``observer``); through the
    ledger service listening at ``service`` if given (it then reports the commits)."""
    keys = read_ledger_keys(config.path(config.ledger_keys))
    policy = LedgerConfig(hold_lifetime_ms=config.hold_expiry_ms)
    store = RemoteLedgerStore(service) if service else open_store(config, observer)
    return Ledger(store, keys, config=policy)


class LedgerDirectory:
    """What the CA asks the issuer: does this card exist, is this merchant known.

    Merchants' settlement accounts are opened in ``currency``, the bank's
    ``ledger.settlement_currency``: the currency of its cards, or every authorization
    would be declined CURRENCY_MISMATCH.

    The ledger's ``StoreUnavailable`` (its database unreachable, busy, damaged or closed) becomes
    the CA's ``IssuerUnavailable`` here, the one place between the two: the CA answers it
    with UNAVAILABLE, as an outage of the bank's own parts, never as a refusal.
    """

    def __init__(self, ledger: Ledger, currency: int = DEFAULT_SETTLEMENT_CURRENCY) -> None:
        self._ledger = ledger
        self._currency = currency

    def check_card(self, pan: PAN, expiry: str) -> int:
        """REQUEST_COMPLETE for an active card with this expiry, else why not (for the
        CA's log: the CA answers the requester one refusal for all)."""
        try:
            account = self._ledger.find_card_account(pan.reveal())
        except UnknownAccount:
            return registration_pb2.CERT_STATUS_CODE_UNKNOWN_ACCOUNT
        except StoreUnavailable as exc:
            raise IssuerUnavailable("the issuer ledger cannot look up the card") from exc
        if account.expiry != expiry or account.status is not AccountStatus.ACTIVE:
            return registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER
        return registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE

    def card_key(self, pan: PAN) -> bytes:
        """The keyed hash the CA counts the card's refused registrations under
        (``gateway.ledger.pan.card_refusals_key``): its key stays in the ledger keys file,
        never in ``ca.db``, and it is not the ledger's own index."""
        return self._ledger.card_refusals_key(pan.reveal())

    def may_register_merchant(self, merchant_id: str, account: str | None) -> bool:
        """True when the ledger holds no account for ``merchant_id``, or ``account`` is
        that account's id.

        The ledger keeps no settlement account data of the merchant's own: its account id
        is what the bank knows the merchant's account by, and gives the merchant out of
        band (``setpay bank open-merchant`` enrols an ID before its first registration).
        Compared in constant time: the id is 120 random bits, and the credential that
        lets a merchant register its ID again once its certificates expired or were
        revoked.
        """
        try:
            held = self._ledger.merchant_account(merchant_id)
        except UnknownMerchant:
            return True
        except StoreUnavailable as exc:
            raise IssuerUnavailable("the issuer ledger cannot look up the merchant") from exc
        if account is None:
            return False
        return hmac.compare_digest(account.encode(), held.account_id.encode())

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        """Open the merchant's settlement account (once).

        An account opened before in another currency is left as it is (it may hold
        settled money) and said at WARNING: its authorizations are declined until the
        bank moves it.
        """
        try:
            try:
                self._ledger.open_merchant_account(merchant_id, self._currency)
            except AccountExists:
                held = self._ledger.merchant_account(merchant_id).currency
                if held != self._currency:
                    log.warning(
                        "merchant %s has a settlement account in currency %d, not the"
                        " bank's %d: its authorizations are declined CURRENCY_MISMATCH",
                        merchant_id,
                        held,
                        self._currency,
                    )
        except StoreUnavailable as exc:
            raise IssuerUnavailable("the issuer ledger cannot open the merchant account") from exc
