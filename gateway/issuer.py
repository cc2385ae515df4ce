"""The issuer side of the bank: opening the ledger from the configuration (its keys through
the key backend, ``gateway.ledger_keys``), and the directory the CA asks whether a card or
merchant exists."""

from __future__ import annotations

import hmac
import logging

from gateway.bank_pki import bank_keys_uri
from gateway.ca.enrolment import CardWord
from gateway.ca.errors import IssuerUnavailable
from gateway.config import DEFAULT_SETTLEMENT_CURRENCY, BankConfig
from gateway.ledger import (
    AccountExists,
    AccountStatus,
    CommitObserver,
    Ledger,
    LedgerConfig,
    LedgerStore,
    PostgresLedgerStore,
    PostgresStoreConfig,
    RemoteLedgerStore,
    SqliteLedgerStore,
    StoreUnavailable,
    UnknownAccount,
    UnknownMerchant,
)
from gateway.ledger.key_check import KeyCheck
from gateway.ledger_keys import check_belongs, read_ledger_keys
from hsm.base import KeyBackend
from hsm.uri import open_backend
from setcore.pan import PAN
from setpay.v1 import registration_pb2

log = logging.getLogger("setpay.issuer")

REJECTED = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER
# With ``[ledger] prepare_statements``: psycopg's own default, a statement prepared on the
# server once it has run this many times on a connection.
PREPARE_THRESHOLD = 5


def open_store(config: BankConfig, observer: CommitObserver | None = None) -> LedgerStore:
    """The ledger store the configuration names (SQLite file or PostgreSQL URL), reporting
    each commit to ``observer`` (metrics). ``ledger.prepare_statements`` concerns
    PostgreSQL only: SQLite keeps its statements in the process anyway."""
    url = config.ledger_url()
    if url.startswith("sqlite:"):
        return SqliteLedgerStore(url[len("sqlite:") :], observer=observer)
    prepared = PREPARE_THRESHOLD if config.ledger_prepare_statements else None
    return PostgresLedgerStore(
        url, PostgresStoreConfig(prepare_threshold=prepared), observer=observer
    )


def open_ledger(
    config: BankConfig,
    observer: CommitObserver | None = None,
    *,
    service: str | None = None,
    backend: KeyBackend | None = None,
) -> Ledger:
    """The issuer ledger of this bank (commits reported to ``observer``); through the
    ledger service listening at ``service`` if given (it then reports the commits).

    Its keys are opened through ``backend``, the bank's key backend a bank process has
    open already; without one (a command that opens the ledger alone), through the bank's
    backend opened for that and closed again. Then they must be the ledger's own
    (``gateway.ledger_keys.check_belongs``): NotThisLedgersKeys, and nothing opened, if not."""
    if backend is not None:
        keys = read_ledger_keys(config, backend)
    else:
        with open_backend(bank_keys_uri(config)) as own:
            keys = read_ledger_keys(config, own)
    policy = LedgerConfig(
        hold_lifetime_ms=config.hold_expiry_ms, retention_days=config.retention_days
    )
    store = RemoteLedgerStore(service) if service else open_store(config, observer)
    try:
        how = check_belongs(config, store, keys)
    except BaseException:
        store.close()
        raise
    if how is not KeyCheck.MATCHED:
        log.info("ledger keys: %s", how.value)
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

    def check_enrolled_card(self, pan: PAN, expiry: str, enrolment_code: str | None) -> CardWord:
        """``check_card``, and for a card with an enrolment code, REJECTED_BY_ISSUER
        unless ``enrolment_code`` is that code (the ledger compares in constant time)."""
        try:
            found = self._ledger.check_enrolment(pan.reveal(), enrolment_code)
        except UnknownAccount:
            return CardWord(registration_pb2.CERT_STATUS_CODE_UNKNOWN_ACCOUNT)
        except StoreUnavailable as exc:
            raise IssuerUnavailable("the issuer ledger cannot look up the card") from exc
        account, has_code = found.account, found.has_code
        if has_code and not found.code_matches:
            return CardWord(REJECTED, has_code, "the enrolment code is not the card's")
        if account.expiry != expiry or account.status is not AccountStatus.ACTIVE:
            return CardWord(REJECTED, has_code)
        return CardWord(registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE, has_code)

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
