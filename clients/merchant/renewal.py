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
was fresh, still inside the gateway when the refusal was decided (its ledger may take
up to 30 s to commit, ``gateway.ledger.group_commit.SUBMIT_TIMEOUT_SECONDS``). Such a
sending ends within 30 s of the window's end, so a request is built afresh only once it
is older than the window by ``RENEW_MARGIN_MS`` on the merchant's clock (which the
margin lets differ from the gateway's by up to 30 s); until then it waits as it is, and
a later try either gets the gateway's stored answer or meets the refusal again.

A PI too old. The gateway gives the same code to an AuthReq whose PI's signed order
date (PReqDate) is older than its bound (``setcore.freshness.PI_MAX_AGE_MS``): no AuthReq
around that PI can ever be authorized, built afresh or not. The merchant knows the
order's PReqDate (it dated the order's TransIDs, which the PI must repeat for any
AuthReq around it to pass), so once the PI was older than the bound by
``RENEW_MARGIN_MS`` as the refused sending began, the order ends failed with the
gateway's code, never built afresh (``pi_past_bound``). The same proof holds: an
earlier sending of those bytes was let in only while the PI was within the bound on the
gateway's clock, so it ended within 30 s after; the refusal was decided no earlier than
the sending began less the clocks' 30 s, so after it, and found no answer to those
bytes. The merchant's clock is read as the sending begins, not once the refusal is
back, which may be a deadline later. Within that margin of the bound the PI may still
be young by the gateway's clock, and the refusal may be of the AuthReq's own date: the
rules above apply (a request built afresh whose PI the gateway finds too old is refused
in turn, and ends failed).
"""

from __future__ import annotations

from setcore.errors import ErrorCode, PeerError
from setcore.freshness import FRESHNESS_WINDOW_MS, PI_MAX_AGE_MS, now_ms

# Twice the gateway ledger's longest wait for a commit: an earlier sending of the same
# bytes has been committed or given up for good by then.
RENEW_MARGIN_MS = 60_000
_DAY_MS = 24 * 3600 * 1000


def refused_as_stale(error: PeerError) -> bool:
    """True when the gateway refused a request because its date is too old."""
    return error.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD


def may_renew(stored_ms: int) -> bool:
    """True when a request stored at ``stored_ms`` (after it was dated, before it was first
    sent) may be built afresh after a refusal as too old: no earlier sending of it can
    still be at the gateway."""
    return now_ms() - stored_ms >= FRESHNESS_WINDOW_MS + RENEW_MARGIN_MS


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
