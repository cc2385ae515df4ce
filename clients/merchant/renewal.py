"""Requests the gateway refused as too old: when the merchant may build one afresh.

A request stored during a gateway outage goes out again byte for byte, its date
included. Once that date is older than the gateway's freshness window
(``setcore.freshness.FRESHNESS_WINDOW_MS``) the gateway refuses it with the SET Error
MESSAGE_TOO_OLD, and sending the same bytes again can never succeed.

That refusal proves the gateway holds no answer to those bytes: it checks a request's
date while opening it, before the ledger sees it (``check_rr_tags`` in
``setcore.authorization``), and when a check fails it first answers from the response
its ledger stored under the request's RRPID for those exact bytes, if any
(``gateway.servicer``). The ledger keeps a stored response for ``[ledger] retention_days``
after the decision (400 days by default, never fewer than 31), and a refund's, or a
decision's whose answer was never stored, for good (``gateway.ledger.retention``). A
decision of those bytes whose answer was never stored is answered then, or gets
UNAVAILABLE, never the refusal. So the same request built afresh, under a new RRPID and
date, is not applied twice. A request that waited longer than the retention may be
refused although it was decided; built afresh, it moves no money (the ledger's own rules
decline it: its hold expired, its PI used or its card expired), but the merchant then
holds that answer, not the first decision's.

One case escapes that proof: an earlier sending of the same bytes, let in while its date
was fresh, still inside the gateway when the refusal was decided. A gateway of this
release closes it: its refusal as too old is not a read of the ledger but a write, a
fence under the request's RRPID (``gateway.ledger.idempotency.fence``), which returns a
decision of those bytes committed before it, or waits for one being committed, and
answers it; otherwise no decision of them can ever be written after it (the RRPID is
the key of both). So the refusal is final however late a decision's commit would have
landed. A gateway of an older release only looks the answer up, and there the margin
below carries the proof alone. The merchant cannot tell which it speaks to, so it keeps
the margin either way, and the rest of this docstring is that proof. The gateway's
ledger bounds such a sending: it decides a request within ``LEDGER_DECIDES_WITHIN_MS``
of the moment the gateway checked it, or never
(``gateway.ledger.idempotency.DECIDED_WITHIN_MS``; a job that waited longer, in the
writer's queue, for its turn or for a lock, or on its way to the ledger process, ends
undecided, nothing written, and its caller hears UNAVAILABLE), and the commit that
carries a decision follows it by less than ``COMMIT_ALLOWANCE_MS``.
That last is an assumption about the bank's disk and database, which nothing enforces:
an fsync stalled longer, or a PostgreSQL COMMIT waiting for a synchronous standby that
is gone (a wait no statement timeout ends), lands a decision later, invisible to the
lookup until then, and against a gateway that does not fence the proof below fails with
it. So a request is built afresh only once the sending refused began, on the merchant's
clock, ``RENEW_MARGIN_MS`` past the window's end (``may_renew``): the sum of those two
and ``CLOCK_TOLERANCE_MS``, how far the margin lets the merchant's clock run ahead of the
gateway's. The proof, with D the request's date (the merchant's clock dated it, then
stored it, at ``stored_ms`` >= D) and W the window:

- an earlier sending was let in by a check at a moment t <= D + W of the gateway's
  clock (its date was fresh then), so its decision, if any, was written by t + 20 s and
  committed by t + 30 s <= D + W + 30 s;
- the refused sending began at ``sent_ms`` >= ``stored_ms`` + W + 60 s on the merchant's
  clock, so it reached the gateway, which checked it and looked for a stored answer, no
  earlier than ``sent_ms`` - 30 s >= D + W + 30 s on the gateway's: after that commit.

So the lookup saw every decision of those bytes there will ever be, and found none.
Until then the request waits as it is, and a later try either gets the gateway's stored
answer or meets the refusal again. The moment is the sending's start (``sent_ms``, read
before it goes), never that of the refusal's coming back, which may be a deadline later
and would let a request through early. The tolerance is the margin's own: a merchant
whose clock runs ahead of the gateway's by more than 30 s may build a request afresh,
or end an order failed, while an earlier sending is still being decided. (The five
minutes of ``setcore.pki.issuance.CLOCK_SKEW`` are what a certificate's validity allows
two clocks, and the freshness window a message's date; they are not this tolerance.)

A PI too old. The gateway gives the same code to an AuthReq whose PI's signed order
date (PReqDate) is older than its bound (``setcore.freshness.PI_MAX_AGE_MS``): no AuthReq
around that PI can ever be authorized, built afresh or not. The merchant knows the
order's PReqDate (it dated the order's TransIDs, which the PI must repeat for any
AuthReq around it to pass), so when the PI was older than the bound by
``RENEW_MARGIN_MS`` as the refused sending began, the order ends failed with the
gateway's code, never built afresh (``pi_past_bound``). But only once no earlier sending
of those bytes can still be at the gateway: one let in while the PI was young may be
deciding yet, and approve, and the order must not be failed under a hold on the card.
That is known in one of two ways. Either the rule above holds (``may_renew``: the bytes
were stored long enough before the refused sending began), or the PI was already past
the bound by the margin when the bytes were stored (``pi_past_bound`` at
``stored_ms``): every sending of them then began after that, and reached a gateway
whose clock read the PI older than its bound by at least the margin less the
tolerance, 30 s, so each was refused before its ledger saw it, and none was ever let in.
Otherwise the order waits, as a request refused as too old does, and ends failed at a
later try. Within the margin of the bound the PI may still be young by the gateway's
clock, and the refusal may be of the AuthReq's own date: the rules above apply (a
request built afresh whose PI the gateway finds too old is refused in turn, and ends
failed).
"""

from __future__ import annotations

from setcore.errors import ErrorCode, PeerError
from setcore.freshness import FRESHNESS_WINDOW_MS, PI_MAX_AGE_MS

# How far ahead of the gateway's clock the merchant's may run for the proof above to hold.
CLOCK_TOLERANCE_MS = 30_000
# How long after the gateway checked a request its ledger may still decide it:
# ``gateway.ledger.idempotency.DECIDED_WITHIN_MS``, which the merchant cannot import
# (gateway and clients are independent); a test holds the two equal.
LEDGER_DECIDES_WITHIN_MS = 20_000
# How long after a decision the commit that carries it may land: one group's window and
# fsync (SQLite), one INSERT and a COMMIT (PostgreSQL), milliseconds when the disk is well.
COMMIT_ALLOWANCE_MS = 10_000
# How far past the window (or the PI's bound) a refused sending must have begun for no
# earlier sending of the same bytes to be still at the gateway (the module docstring).
RENEW_MARGIN_MS = LEDGER_DECIDES_WITHIN_MS + COMMIT_ALLOWANCE_MS + CLOCK_TOLERANCE_MS
_DAY_MS = 24 * 3600 * 1000


def refused_as_stale(error: PeerError) -> bool:
    """True when the gateway refused a request because its date is too old."""
    return error.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD


def may_renew(stored_ms: int, sent_ms: int) -> bool:
    """True when a request stored at ``stored_ms`` (after it was dated, before it was first
    sent), refused as too old in a sending that began at ``sent_ms``, may be built afresh:
    no earlier sending of it can still be at the gateway (the module docstring)."""
    return sent_ms >= decidable_until(stored_ms)


def decidable_until(stored_ms: int) -> int:
    """The first moment of the merchant's clock at which a sending that begins then may
    take a verified refusal of a request stored at ``stored_ms`` as final, whatever its
    code: no earlier sending of the same bytes can still be decided at the gateway. The
    bound of ``may_renew``: an earlier sending was let in while the bytes' date was
    fresh, and the proof in the module docstring holds for any refusal that follows it,
    not only one as too old."""
    return stored_ms + FRESHNESS_WINDOW_MS + RENEW_MARGIN_MS


def pi_past_bound(preq_date_ms: int, sent_ms: int) -> str | None:
    """Why an AuthReq around a PI whose signed order date is ``preq_date_ms``, refused as
    too old in a sending that began at ``sent_ms``, ends failed rather than be built
    afresh: its PI is past the gateway's bound by the margin (see the module docstring);
    None when it is not, or not surely."""
    age = sent_ms - preq_date_ms
    if age < PI_MAX_AGE_MS + RENEW_MARGIN_MS:
        return None
    return (
        f"its PI was signed {age / _DAY_MS:.1f} days before it was sent, past the"
        f" gateway's bound of {PI_MAX_AGE_MS / _DAY_MS:.0f} days: no AuthReq around it"
        " can be authorized, so it is not built afresh"
    )
