"""The ledger's money operations: what they promise, and the RRPID machinery they share.

Each is idempotent on the RRPID: it takes ``rrpid``, ``request_digest`` and ``respond``,
and may take ``checked_at_ms``, the moment the caller checked the request, which is kept
with the decision so that an answer built after a failure is checked as of it.
The decision is committed first; then ``respond`` gets the ``Outcome``, in the caller's
thread and outside any transaction, and returns the signed response bytes; the ledger
stores them under the RRPID and returns them only once they are durably committed
(``idempotency`` says why in two steps, and what a failure between them leaves). A retry
with the same RRPID and digest returns the stored bytes (or answers the stored decision)
and decides nothing; the same RRPID with another digest raises RrpidReused.

The operations come by domain, each a class over ``MoneyOperations`` that ``Ledger``
inherits: authorizations (``money_authorization``), settlement postings
(``money_settlement``) and batch admin (``money_batches``). They come from SET messages,
and change with the protocol; the account admin and the books that ``Ledger`` keeps in
``ledger`` come from the bank's own tooling.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from gateway.ledger import idempotency
from gateway.ledger.errors import AnswerNotStored
from gateway.ledger.limits import check_bytes, check_moment
from gateway.ledger.outcomes import Outcome, PrebuiltApproval, Responder, Unanswered
from gateway.ledger.pan import LedgerKeys
from gateway.ledger.store import LedgerStore, Transaction

if TYPE_CHECKING:
    from gateway.ledger.ledger import Clock, LedgerConfig


# Like every operation the ledger hands its store, a gateway decline is a ``partial`` of a
# module-level function, never a lambda, so it can travel to the ledger service by value
# (``wire``, which is why this module is among its ``SHIPPED_MODULES``).


def decided_by_caller(tx: Transaction, *, outcome: Outcome) -> Outcome:
    """The ``decide`` of an outcome the caller decided itself (a gateway decline)."""
    return outcome


class MoneyOperations:
    """What every RRPID-keyed operation of ``Ledger`` shares: deciding once, answering once."""

    # ``Ledger`` sets these. It inherits the operations rather than delegating to them so
    # that each public signature is written once.
    _store: LedgerStore
    _keys: LedgerKeys
    _config: LedgerConfig
    _clock: Clock

    # Money operations, idempotent on the RRPID.

    def _once(
        self,
        *,
        rrpid: bytes,
        request_digest: bytes,
        now_ms: int,
        checked_at_ms: int | None,
        decide: Callable[[Transaction], Outcome],
        respond: Responder,
        prebuilt: PrebuiltApproval | None = None,
    ) -> bytes:
        """The answer to this request: stored, or decided now and answered by ``respond``.

        Once the decision is committed, any failure to build or store its answer is
        AnswerNotStored: the caller must not report the request as refused.
        """
        check_bytes("rrpid", rrpid)
        check_bytes("request_digest", request_digest)
        if checked_at_ms is not None:
            check_moment("checked_at_ms", checked_at_ms)
        recorded = self._store.execute(
            partial(
                idempotency.decide_once,
                rrpid=rrpid,
                request_digest=request_digest,
                now_ms=now_ms,
                checked_at_ms=checked_at_ms,
                decide=decide,
                prebuilt=prebuilt,
            )
        )
        if isinstance(recorded, bytes):
            return recorded
        # Committed and unanswered: sign here, in the caller's thread, holding nothing.
        try:
            response = respond(recorded.outcome)
            if not isinstance(response, bytes):
                raise TypeError(f"respond must return bytes, not {type(response).__name__}")
            return self._store.execute(
                partial(
                    idempotency.store_answer,
                    rrpid=rrpid,
                    request_digest=request_digest,
                    response=response,
                )
            )
        except Exception as exc:
            raise AnswerNotStored(
                f"decided, but its answer was not stored ({type(exc).__name__})"
            ) from exc

    def stored_response(self, rrpid: bytes, request_digest: bytes) -> bytes | Unanswered | None:
        """What the ledger holds for exactly this request, if it was decided before: the
        stored answer, or ``Unanswered`` when the decision's answer was never stored.

        Lets the gateway answer a retry whose checks no longer pass (its date has aged
        out of the freshness window) as it answered, or would have answered, the first
        time. Raises RrpidReused when the RRPID was used for another request, and
        RequestFenced when these bytes were refused as too old (``fence_stale``).
        """
        check_bytes("rrpid", rrpid)
        check_bytes("request_digest", request_digest)
        return self._store.read(
            partial(idempotency.lookup, rrpid=rrpid, request_digest=request_digest)
        )

    def fence_stale(self, rrpid: bytes, request_digest: bytes) -> bytes | Unanswered | None:
        """Make the gateway's refusal of exactly this request as too old final: what the
        ledger holds for it, as ``stored_response`` gives it, if it was decided; else None,
        and its RRPID fenced, so that no sending of it still on its way is ever decided
        (``idempotency.fence``).

        A write, for the MESSAGE_TOO_OLD refusals alone: a read could miss a decision
        whose commit is still landing, and the merchant builds a request so refused
        afresh. StoreUnavailable when the fence cannot be written: the refusal must not
        be answered then. Raises RrpidReused when the RRPID holds another request's row.
        """
        check_bytes("rrpid", rrpid)
        check_bytes("request_digest", request_digest)
        return self._store.execute(
            partial(
                idempotency.fence,
                rrpid=rrpid,
                request_digest=request_digest,
                now_ms=self._clock(),
            )
        )
