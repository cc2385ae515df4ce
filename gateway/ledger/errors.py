"""The issuer ledger's error tree.

Business outcomes (a declined authorization, a capture above the authorized amount, an
unknown batch) are not errors: they are ``Declined`` outcomes, stored and answered like
any other (``gateway.ledger.outcomes``). Errors are what the gateway cannot answer with a
normal response: a replayed payment instruction (a signed SET Error), a reused RRPID, a
request the ledger refuses to look at, a database that is not there.

The stores translate sqlite3 and psycopg exceptions into these, once, at their boundary,
chaining the original with ``from``. No message carries a PAN, a key or a response body.

    LedgerError
    ├── InvalidRequest      arguments refused before any state is read (amount, PAN format)
    │   └── LedgerMisuse    the gateway called the ledger in a way it never should: a bug
    │                       on the bank's side, not the request's fault
    ├── UnknownAccount      no card account with that id or PAN
    ├── UnknownMerchant     no merchant account for that merchant id
    ├── AccountExists       that PAN or merchant id already has an account
    ├── AccountStateError   the account's status forbids the change (e.g. unblock a closed card)
    ├── UnknownHold         no authorization hold with that id (reads only)
    ├── UnknownBatch        no such settlement batch for that merchant (reads only)
    ├── PiPreviouslyUsed    the payment instruction (its XID) was already used
    ├── RrpidReused         the RRPID was already used for a different request
    ├── RequestFenced       the request was refused as too old: it is never decided
    ├── AnswerNotStored     the decision is committed, its answer failed: a retry answers it
    ├── PanUnreadable       a stored PAN failed authentication (wrong key, or moved rows)
    ├── LedgerImbalance     the books do not balance (check_balanced)
    ├── SchemaError         the database schema is newer than this code, or unknown
    └── StoreError          the database failed in a way the rules did not expect
        ├── OutcomeUnreadable a decision awaiting its answer is stored in a form not ours
        └── StoreUnavailable  the database is unreachable, busy, damaged, read-only (a hot
            │                 standby) or closed: send the same request again later
            ├── StoreAway     the ledger process or the database server cannot be reached
            │                 now: a fault that passes by itself, once it is back
            ├── StoreBusy     the database answers but another holds what is needed (the
            │                 write lock, every connection slot): passes once it lets go
            └── DecisionSettled the decision was settled by hand: never answered, never
                              decided again (answered UNAVAILABLE all the same)
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the issuer ledger raises."""


class InvalidRequest(LedgerError):
    """The arguments are malformed or out of range; nothing was read or changed."""


class LedgerMisuse(InvalidRequest):
    """The gateway's own call is wrong (a prebuilt approval for another hold, a decline
    reason only the issuer gives): nothing was read or changed, and the request that led
    to it may be sound, so it is not answered as the requester's bad input."""


class UnknownAccount(LedgerError):
    """No card account has that id or PAN."""


class UnknownMerchant(LedgerError):
    """No merchant account exists for that merchant id."""


class AccountExists(LedgerError):
    """An account for that PAN or merchant id already exists."""


class AccountStateError(LedgerError):
    """The account's status forbids the requested change."""


class UnknownHold(LedgerError):
    """No authorization hold has that id."""


class UnknownBatch(LedgerError):
    """The merchant has no settlement batch with that id (or no open batch)."""


class PiPreviouslyUsed(LedgerError):
    """The payment instruction was already used: the XID is in the replay store."""


class RrpidReused(LedgerError):
    """The RRPID was already used with a different request digest."""


class RequestFenced(LedgerError):
    """The gateway refused these very request bytes as too old and fenced their RRPID
    (``idempotency.fence``): they are never decided, however late a sending of them
    reaches the ledger. Answered MESSAGE_TOO_OLD, as the refusal was."""


class AnswerNotStored(LedgerError):
    """The decision is committed, but its answer failed to be built or stored (the cause
    is chained): the money moved as decided, and a retry of the same request is answered
    from the decision without deciding again. Never an answer of failure to the peer."""


class PanUnreadable(LedgerError):
    """A sealed PAN failed to open: wrong data key, or the row was tampered with or moved."""


class LedgerImbalance(LedgerError):
    """The double-entry books, or the holds behind them, do not add up."""


class SchemaError(LedgerError):
    """The database schema is newer than this code knows, or is not a ledger schema."""


class StoreError(LedgerError):
    """The database failed in a way the ledger rules did not expect (a constraint, a bug)."""


class OutcomeUnreadable(StoreError):
    """A stored outcome is not one this code wrote (``outcome_codec``): a damaged or
    foreign row."""


class StoreUnavailable(StoreError):
    """The database is unreachable, busy beyond its timeout, damaged (until the operator
    restores it), refuses writes (a hot standby, until a failover completes), or the store
    is closed. The change may still have been made (a commit whose acknowledgement was
    lost, a caller that stopped waiting for its group): the same request, sent again, is
    answered by its RRPID either way."""


class StoreAway(StoreUnavailable):
    """The ledger is away: the ledger process's connection failed (refused, reset, ended,
    timed out: the process killed or restarting), or the PostgreSQL server did not answer
    (its connection refused, timed out or lost, the server shutting down or starting).
    Raised only where such a fault is translated (``remote`` and ``wire``, ``postgres``
    and ``postgres_refusals``), never for a fault that lasts until the operator mends it: a
    damaged file or one that is no database, a file that cannot be created, a password
    refused, a database missing. Those stay plain StoreUnavailable.

    The difference matters at a worker's start only: a replacement that meets the ledger
    away is started again once it is back (``gateway.child.PASSING_FAULTS``), while one
    meeting a lasting fault stops the bank, which would otherwise retry it for ever and
    say nothing more. A request meeting either is answered UNAVAILABLE alike."""


class StoreBusy(StoreUnavailable):
    """The database answers, but another holds what the store needs, past its wait: on
    SQLite the write lock kept beyond the busy timeout (BUSY, not LOCKED: another program's
    long write, an operator's shell, a VACUUM), and so the write turn between processes
    (``write_lock``); on PostgreSQL every connection slot taken (SQLSTATE 53300, too many
    clients: a ledger shared by several hosts meets a peak of connections, and one closing
    frees a slot), or a lock another session holds past ``lock_timeout`` (55P03). Raised
    only where such a fault is translated (``sqlite``, ``write_lock``, ``postgres`` and
    ``postgres_refusals``).

    Not StoreAway (the database is there, answering) but, like it, a fault that passes by
    itself: a worker's replacement meeting it as it starts (its migration's BEGIN
    IMMEDIATE, its first connection) is started again (``gateway.child.PASSING_FAULTS``).
    Taken for lasting, it stopped the whole bank while another worker served. A request
    meeting it is answered UNAVAILABLE as any StoreUnavailable."""


class DecisionSettled(StoreUnavailable):
    """The request's decision was committed, its answer never stored, and an operator
    settled it by hand (``idempotency.SettledByHand``, ``setpay bank settle-unanswered``):
    it is never answered nor decided again. A StoreUnavailable, so that every caller
    answers it UNAVAILABLE, never a refusal (which a merchant takes as "nothing happened"
    and builds afresh); its own class, so that the gateway says in its log what happened
    (the message: never the operator's reason) rather than "database unavailable". It
    crosses the ledger service's wire as the other errors of this module do."""
