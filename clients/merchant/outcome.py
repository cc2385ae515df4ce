"""One policy for the gateway's answers, for every request the merchant sends it.

    what came back                                           the request is
    an answer that verifies: signed by a gateway whose       final: recorded (approved,
    chain verifies, naming our RRPID, our name and our       declined, succeeded, refused)
    request, settling no more than was asked
      but its result code (AuthCode, CapCode, AuthRevCode,   pending, asked again less
      CapRevOrCredCode, BatchAdminStatus) is one this build  and less often, never built
      does not define (a gateway of a later release)         afresh: the merchant must be
                                                             upgraded to read it
    a SET Error that verifies: signed by a gateway, naming   final: failed, with its code
    our RRPID (``setcore.error_message.open_error``)
      but UNSPECIFIED_FAILURE, or a code this build does     pending: it does not say the
      not define (a gateway of a later release)              gateway did nothing
      but MESSAGE_TOO_OLD                                    ``renewal``'s: built afresh
                                                             under a new RRPID, failed (an
                                                             order's PI past the gateway's
                                                             bound), or pending
                                                             (``answer_gone``)
      but to bytes answered before with a result code this   pending (``answer_gone``): the
      build does not define                                  gateway decided them
    nothing (``TransportError``: unreachable, a deadline,    pending
    a frame that does not parse)
    anything that does not verify (``ProtocolError``: a     pending, asked again less and
    bad signature, another RRPID, an unsigned Error, an      less often (``next_try``)
    answer that does not open or parse, another amount)
    a failure of the merchant's own once the request is      pending
    stored (its key backend opening the answer, its store
    saving it)

Pending means "outcome unknown, will retry": the gateway may have applied the request (a
hold on the card, a capture, a refund), so it is neither failed nor forgotten. It was
stored byte for byte before it was first sent (``store``), and those bytes go again
until a final answer comes back: the authorization worker, ``Settlement.resume`` and
``Batches.resume`` (a batch open, close or purge is a request like the others).
The gateway keeps one decision and its exact answer per RRPID
(``gateway.ledger.idempotency``), so a retry gets what was decided the first time, and
never a second hold or capture. No check is relaxed: what does not verify is never
recorded, it is asked for again.

That same stored answer comes back at every retry, so one that did not verify will not
verify the next time either, until something changes (a trust store mended, a key back,
someone in between gone). A request left pending that way is sent again by the
background retries only after ``next_try``'s wait, which doubles at each such answer,
and ``setpay merchant orders`` shows it as such; no answer at all (a gateway away), and
a failure of the merchant's own, keep the fast retries. A merchant starting, and a
batch command given again, send it at once: that is how an operator asks again now.

A verified answer whose result code this build does not define (``require_known``,
``clients.errors.UnknownResultCode``) is read as neither a yes nor a no: a later
release may have added an approval variant (a partial approval, a hold placed) or a
capture taken, and recorded as a decline or a refusal the cardholder would be told the
order was declined and buy again while the first hold stands. Nothing of it is recorded
and the request's bytes are kept, so that a merchant upgraded to a release that reads
the code sends them again and reads the same stored answer. Until then every retry gets
that answer: it waits as one that did not verify does (``next_try``), and each time the
log says, as an error naming the code by its bounded name (``AuthCode 42``), that this
merchant must be upgraded. A known code is read as before: a decline stays a decline,
whatever its RespReason, which only explains it. Such an answer is counted in the
request's row (``unreadable``), apart from answers that did not verify: it proves the
gateway decided those bytes, so they are never built afresh, even once the gateway's
retention has dropped that answer and it refuses them as too old (``answer_gone``):
someone must settle that request by hand. Nor are they ended failed by any other
verified refusal of them that follows (one of the gateway's checks failing once that
answer is dropped): the request stays pending, logged as such (``answer_gone``).

A signed Error of a code this build does not define keeps the fast retries, as
UNSPECIFIED_FAILURE does: the gateway may answer otherwise the next time. If it stored
that Error as its decision, each retry gets it again and logs it, by its bounded name
(``ErrorCode N``), until this merchant is upgraded to a release that reads it.
"""

from __future__ import annotations

import logging
import time

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from clients.errors import ClientError, OutcomeUnknown, TransportError, UnknownResultCode
from clients.merchant import renewal
from clients.merchant.records import BatchRequest, Operation, Order
from clients.merchant.store import MerchantStore
from hsm.errors import KeyBackendError
from setcore.enum_names import code_name, is_known
from setcore.errors import ErrorCode, PeerError, ProtocolError, SetcoreError
from setcore.freshness import now_ms
from setcore.pki.bci import RevocationUnavailable

log = logging.getLogger("setpay.merchant")

UNSPECIFIED_FAILURE = ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE

# What a call of ``GatewayClient`` raises instead of a verified answer.
GATEWAY_FAILURES = (TransportError, PeerError, ProtocolError)

# A request whose answer did not verify waits this long before a background retry, twice
# as long after each further such answer, never more than UNVERIFIED_MAX_WAIT_MS. The
# first wait is the settlement rounds' pace (``runtime.RESUME_SECONDS``); an hour keeps
# the log to one error an hour for each such request while it waits for someone to mend
# what is wrong, and is as long as a mended merchant left running waits to be seen (a
# restart asks at once, as does a batch command given again).
UNVERIFIED_FIRST_WAIT_MS = 30_000
UNVERIFIED_MAX_WAIT_MS = 3_600_000

Pending = Order | Operation | BatchRequest
"""A request waiting for a final answer: an order authorizing, an operation or a batch
change sent."""


def is_refusal(error: PeerError) -> bool:
    """True when ``error`` is the gateway's verified refusal of the request, which is
    final: a SET Error signed by the gateway naming our RRPID (``open_error`` raises no
    other as ``PeerError``), but for UNSPECIFIED_FAILURE and a code this build does not
    define. Strict parsing lets a later release's ErrorCode through
    (``setcore.enum_names``), and this merchant cannot tell whether it says the gateway
    did nothing or, as UNSPECIFIED_FAILURE may, that it failed after placing a hold:
    ended failed, an order would have the wallet told ORDER_REJECTED, and the
    cardholder buy again (the wallet reads such a code from its merchant the same way,
    ``clients.wallet.merchant_answers.undecided``). A result code of a later release
    inside a verified answer (an AuthCode, a CapCode, a BatchAdminStatus) is read the
    same way, for the same reason: not a refusal, the request stays pending
    (``require_known``)."""
    return error.code != UNSPECIFIED_FAILURE and is_known(ErrorCode, error.code)


def require_known(enum: EnumTypeWrapper, code: int) -> None:
    """Refuse to read a verified answer whose result ``code`` (of ``enum``) this build does
    not define: ``UnknownResultCode``, which leaves the request pending, nothing recorded.
    Called once the rest of the answer is checked, so that it is raised only for an
    answer this merchant would otherwise have taken."""
    if not is_known(enum, code):
        raise UnknownResultCode(code_name(enum, code))


def did_not_verify(error: Exception) -> bool:
    """True when ``error`` is an answer that came and failed a check, as opposed to none
    at all, a gateway's own failure, or revocation data not current enough to check it."""
    return isinstance(error, ProtocolError) and not isinstance(error, RevocationUnavailable)


def why_unknown(error: Exception) -> str:
    """For the log: why the request's outcome is unknown (never card data: there is none)."""
    if isinstance(error, TransportError):
        return f"no answer from the gateway: {error}"
    if isinstance(error, PeerError) and renewal.refused_as_stale(error):
        return "refused as too old, but only just: an earlier sending may still be at the gateway"
    if isinstance(error, PeerError) and not is_known(ErrorCode, error.code):
        return (
            f"the gateway refused with {error.code_name}, a code of a later release this "
            "merchant cannot read, which may not say it did nothing"
        )
    if isinstance(error, PeerError):
        return f"the gateway failed without saying it did nothing: {error.code_name}"
    if isinstance(error, UnknownResultCode):
        return str(error)  # the answer verified: not "did not verify"
    if isinstance(error, RevocationUnavailable):
        return f"the gateway's answer cannot be checked without current revocation data: {error}"
    if isinstance(error, ProtocolError):
        return f"the gateway's answer did not verify: {error}"
    return f"the merchant could not open or save the answer: {type(error).__name__}: {error}"


def next_try(unverified: int, error: Exception, unreadable: int = 0) -> tuple[int, int] | None:
    """After ``error`` left a request pending that had ``unverified`` answers in a row
    that did not verify, and ``unreadable`` verified ones of a result code this build
    cannot read: the first count now, and the time before which background retries
    leave it (0: none); None when neither changes.

    Each answer of either kind doubles the wait: the gateway answers the same at every
    retry, until something is mended or this merchant upgraded. An unreadable one is
    not one that did not verify: it ends their run (it verified), and ``pending`` counts
    it apart (``MerchantStore.postpone``), a count never reset, since it is what keeps
    the request from being built afresh (``stored_requests``)."""
    unread = isinstance(error, UnknownResultCode)
    if did_not_verify(error) or unread:
        count = 0 if unread else unverified + 1
        return count, _wait_until(count + unreadable + unread)
    if not unverified:
        return None
    # The run of answers that did not verify ends; answers it could not read still stand
    # (the gateway gives them again), and keep their wait rather than the fast retries.
    return 0, _wait_until(unreadable) if unreadable else 0


def _wait_until(answers: int) -> int:
    """When background retries may send again after ``answers`` (at least 1) that did
    not verify or could not be read."""
    # Sixteen doublings are well past the cap: the bound keeps the number small however
    # many answers there were.
    wait = UNVERIFIED_FIRST_WAIT_MS * 2 ** min(answers - 1, 16)
    return int(now_ms() + min(wait, UNVERIFIED_MAX_WAIT_MS))


def pending(store: MerchantStore, request: Pending, what: str, error: Exception) -> OutcomeUnknown:
    """Log that ``request`` (``what``: by short ids) stays pending, and why, and put off
    its next background try if its answer did not verify or could not be read (counted
    as such); the ``OutcomeUnknown`` to raise where someone waits for the answer (a
    command).

    No answer at all is a warning; an answer that does not verify (a gateway, a key or a
    trust store that is wrong, or someone in between), one this merchant cannot read (an
    upgrade due) or a failure of the merchant's own is an error, logged with its stack
    when it is none the merchant knows (a bug).
    """
    reason = why_unknown(error)
    quiet = isinstance(error, TransportError | PeerError | RevocationUnavailable)
    known = isinstance(error, ClientError | SetcoreError | KeyBackendError)
    log.log(
        logging.WARNING if quiet else logging.ERROR,
        "%s: outcome unknown, will retry (%s)", what, reason,
        exc_info=None if known else error,
    )  # fmt: skip
    change = next_try(request.unverified, error, request.unreadable)
    if change is not None:
        _postpone(store, request, what, *change, unreadable=isinstance(error, UnknownResultCode))
    return OutcomeUnknown(what, reason, error)


def answer_gone(
    store: MerchantStore, request: Pending, what: str, error: PeerError
) -> OutcomeUnknown:
    """``request``'s bytes, answered before with a result code this build cannot read
    (the row's ``unreadable``), are now refused with a verified SET Error: the gateway
    decided those bytes, and the refusal undoes nothing of it (a hold or a capture may
    stand), so they are neither built afresh nor ended failed.

    Refused as too old, the gateway no longer holds that answer (``renewal``): under a
    new RRPID it would decide them again (a second capture, or an AuthReq around a PI it
    holds a decision for). Refused otherwise, it no longer holds it either: a gateway
    answers bytes it decided with its stored answer, whatever its checks say of them
    now (``gateway.servicer``), so one of its checks failed once its retention had
    dropped that answer (a certificate of the merchant's revoked since, say). Either
    way no retry is answered otherwise: logged as an error, for someone to act, never as
    a failure of the merchant's own; it stays pending, nothing of it changed but its
    next try and its run of answers that did not verify (a verified answer ends it), put
    off by the longest wait so that the error comes once an hour; the ``OutcomeUnknown``
    to raise."""
    refused = (
        "refused as too old"
        if renewal.refused_as_stale(error)
        else f"refused by the gateway with {error.code_name}"
    )
    reason = (
        f"{refused}, but it answered these bytes before, with a result code this merchant "
        "cannot read, so it decided them: left pending, neither built afresh nor ended "
        "failed; the gateway no longer holds that answer, so no release reads it back: "
        "settle it by hand with the acquirer"
    )
    log.error("%s: outcome unknown, will retry (%s)", what, reason)
    # A verified answer ends any run of answers that did not verify, as ``pending`` does.
    _postpone(store, request, what, 0, now_ms() + UNVERIFIED_MAX_WAIT_MS)
    return OutcomeUnknown(what, reason, error)


def undecided(
    store: MerchantStore, request: Pending, what: str, error: PeerError, after_ms: int
) -> OutcomeUnknown:
    """``request``'s bytes, sent before without a verified answer, are refused now with a
    verified SET Error that is not final yet: an earlier sending of the same bytes may
    still be decided at the gateway until ``after_ms`` (the merchant's clock,
    ``renewal.decidable_until``), and a gateway that only fences a refusal as too old
    answers a resend from the checks of the moment (its clock stepped back, a
    certificate expired since) while that sending waits in its ledger. Ended failed, the
    same capture or refund would be allowed again once that sending is applied. So it
    stays pending, put off until then (a verified answer ends any run of answers that
    did not verify), logged as a warning; the next try gets the gateway's stored answer
    if that sending landed, or the refusal again, final once ``after_ms`` has passed."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(after_ms / 1000))
    reason = (
        f"refused ({error.code_name}), but an earlier sending may still be decided:"
        f" asked again after {when}"
    )
    log.warning("%s %s", what, reason)
    _postpone(store, request, what, 0, after_ms)
    return OutcomeUnknown(what, reason, error)


def _postpone(
    store: MerchantStore,
    request: Pending,
    what: str,
    unverified: int,
    at_ms: int,
    *,
    unreadable: bool = False,
) -> None:
    """``MerchantStore.postpone``, a failing store logged: it is tried again sooner."""
    try:
        store.postpone(request, unverified, at_ms, unreadable=unreadable)
    except ClientError as exc:  # a failing store: it is tried again sooner, no worse
        log.warning("%s: its next try is not put off: %s", what, exc)
