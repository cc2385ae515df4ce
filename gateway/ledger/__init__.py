"""The issuer ledger: card and merchant accounts, two-phase money, settlement batches.

Open a store, then a ``Ledger`` over it::

    store = SqliteLedgerStore("ledger.db")          # or PostgresLedgerStore(conninfo)
    ledger = Ledger(store, LedgerKeys(data_key=..., index_key=...))

Money operations are idempotent on the RRPID and return the response bytes built by the
caller's ``respond(outcome)``; see ``gateway.ledger.money`` for the contract and
``gateway.ledger.errors`` for the error tree.
"""

from gateway.ledger.accounts import AccountStatus, CardAccount, MerchantAccount
from gateway.ledger.batches import BatchPage, BatchReport, BatchTransaction
from gateway.ledger.books import CurrencyTotals
from gateway.ledger.errors import (
    AccountExists,
    AccountStateError,
    AnswerNotStored,
    InvalidRequest,
    LedgerError,
    LedgerImbalance,
    LedgerMisuse,
    OutcomeUnreadable,
    PanUnreadable,
    PiPreviouslyUsed,
    RequestFenced,
    RrpidReused,
    SchemaError,
    StoreAway,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    UnknownAccount,
    UnknownBatch,
    UnknownHold,
    UnknownMerchant,
)
from gateway.ledger.group_commit import GroupCommitConfig
from gateway.ledger.holds import Hold
from gateway.ledger.ledger import Clock, Ledger, LedgerConfig, wall_clock_ms
from gateway.ledger.money_authorization import new_hold_id
from gateway.ledger.outcomes import (
    GATEWAY_DECLINES,
    AuthorizationReversed,
    Authorized,
    BatchOutcome,
    BatchSummary,
    Decline,
    Declined,
    KindTotals,
    Outcome,
    Posted,
    PostingOutcome,
    PrebuiltApproval,
    Responder,
    ReversalDeclined,
    TransactionKind,
    Unanswered,
)
from gateway.ledger.pan import LedgerKeys
from gateway.ledger.postgres import PostgresLedgerStore, PostgresStoreConfig
from gateway.ledger.remote import RemoteLedgerStore
from gateway.ledger.settlement import CaptureItem, CreditItem, ReversalItem
from gateway.ledger.sqlite import SqliteLedgerStore, SqliteStoreConfig
from gateway.ledger.store import CommitObserver, CommitStats, LedgerStore
from gateway.ledger.sweeper import HoldSweeper

__all__ = [
    "GATEWAY_DECLINES",
    "AccountExists",
    "AccountStateError",
    "AccountStatus",
    "AnswerNotStored",
    "AuthorizationReversed",
    "Authorized",
    "BatchOutcome",
    "BatchPage",
    "BatchReport",
    "BatchSummary",
    "BatchTransaction",
    "CaptureItem",
    "CardAccount",
    "Clock",
    "CommitObserver",
    "CommitStats",
    "CreditItem",
    "CurrencyTotals",
    "Decline",
    "Declined",
    "GroupCommitConfig",
    "Hold",
    "HoldSweeper",
    "InvalidRequest",
    "KindTotals",
    "Ledger",
    "LedgerConfig",
    "LedgerError",
    "LedgerImbalance",
    "LedgerKeys",
    "LedgerMisuse",
    "LedgerStore",
    "MerchantAccount",
    "Outcome",
    "OutcomeUnreadable",
    "PanUnreadable",
    "PiPreviouslyUsed",
    "Posted",
    "PostgresLedgerStore",
    "PostgresStoreConfig",
    "PostingOutcome",
    "PrebuiltApproval",
    "RemoteLedgerStore",
    "RequestFenced",
    "Responder",
    "ReversalDeclined",
    "ReversalItem",
    "RrpidReused",
    "SchemaError",
    "SqliteLedgerStore",
    "SqliteStoreConfig",
    "StoreAway",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "TransactionKind",
    "Unanswered",
    "UnknownAccount",
    "UnknownBatch",
    "UnknownHold",
    "UnknownMerchant",
    "new_hold_id",
    "wall_clock_ms",
]
