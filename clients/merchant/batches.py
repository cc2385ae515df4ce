"""Settlement batches at the gateway: open, close and purge them, stored first; query them.

Opening, closing and purging change a batch at the gateway, and a repeat under a new
RRPID would not get the first one's answer: the gateway refuses a second close as
BATCH_CLOSED, a second purge as BATCH_UNKNOWN, a second open as BATCH_ALREADY_OPEN,
without naming the batch opened. So each lives the life of a capture
(``stored_requests``): its BatchAdminReq is stored byte for byte before it is sent, a
verified answer settles it (any status this build defines but SUCCESS refuses it), a
verified SET Error ends it "failed", and anything else (``outcome``; a status of a later
release too, which may say the batch was changed, asked again less and less often until
the merchant is upgraded to read it) leaves it "sent", outcome unknown: the command gets
``OutcomeUnknown``, and the same bytes go again when the command is given again (the
same operation on the same batch, or any open while an open waits) and in ``resume`` (at
start and in a serving merchant's rounds). The gateway's RRPID idempotency answers them
with what it decided the first time; one refused as too old may be built afresh under a
new RRPID (``renewal``), never one the gateway answered before with a status this build
cannot read (``stored_requests``). A command given again while a round sends the same
bytes is no harm: both get the one answer, and it is saved once.

While a change of a batch waits, another change of that batch is refused, naming the
one waiting: sent now, it could reach the gateway first and be refused for a state the
waiting one was about to make (a purge before its close). Whether one waits is looked
up as the new one is stored, in one transaction, so two commands never both send one.

Every operation but an open names its batch, by an id the protocol bounds
(``MAX_BATCH_ID_CHARS``): one naming none, or too long for the gateway to decode, is a
``ValueError`` before anything is signed or stored. The gateway would refuse it, and a
close of batch "" whose answer was lost would wait where a waiting open is looked up,
holding up every open.

A query changes nothing and the gateway keeps nothing of it: it is not stored, an answer
that does not verify is an error, and so is one of a status this build does not define
(``UnknownResultCode``, never read as a refusal); asking again is a new query.
"""

from __future__ import annotations

import logging

from clients.errors import OrderStateError
from clients.merchant import outcome
from clients.merchant.records import BatchRequest, OperationState, short
from clients.merchant.stored_requests import StoredRequests
from setcore.capture import MAX_BATCH_ID_CHARS
from setcore.enum_names import code_name
from setcore.errors import PeerError
from setcore.gateway_admin import BatchAdminState, TransactionPage, build_batch_admin_request
from setpay.v1 import gateway_admin_pb2

log = logging.getLogger("setpay.merchant")

OPEN = gateway_admin_pb2.BATCH_OPERATION_OPEN
QUERY = gateway_admin_pb2.BATCH_OPERATION_REQUEST
SUCCESS = gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS


def operation_name(operation: int) -> str:
    """A batch operation as the command line names it: open, close, purge, request."""
    name = code_name(gateway_admin_pb2.BatchOperation, operation)
    return name.removeprefix("BATCH_OPERATION_").lower()


def _named(request: BatchRequest) -> str:
    """A batch request for the log and the command line: what, its id, which batch."""
    batch = f" of batch {request.batch_id}" if request.batch_id else ""
    return f"batch {operation_name(request.operation)} {short(request.rrpid)}{batch}"


def _check_named(operation: int, batch_id: str) -> None:
    """Refuse a batch id the gateway would refuse to decode, and a change or query of no
    batch: "" is an open's, the key a waiting open is kept under."""
    if len(batch_id) > MAX_BATCH_ID_CHARS:
        raise ValueError(f"a batch id is at most {MAX_BATCH_ID_CHARS} characters")
    if not batch_id and operation != OPEN:
        raise ValueError(f"batch {operation_name(operation)} names the batch: give its id")


def _held_up(waiting: BatchRequest, operation: int) -> str:
    """Why ``operation`` waits for ``waiting``, and what sends ``waiting`` again. A close
    or purge of no batch (""), which an earlier release stored and sent, waits where an
    open does; no command can give it again (``_check_named``), but ``resume`` sends its
    bytes, the gateway refuses them, and that ends it."""
    if not waiting.batch_id and waiting.operation != OPEN:
        return (
            f"{_named(waiting)} of no batch, stored and sent by an earlier release, is not "
            "answered yet (outcome unknown, will retry): no command can give it again; let "
            "serve send it (its start-up round does, or a later one), which ends it, before "
            f"{operation_name(operation)}"
        )
    return (
        f"{_named(waiting)} was sent and is not answered yet (outcome unknown, will retry): "
        f"give batch {operation_name(waiting.operation)} again, or let serve send it, "
        f"before {operation_name(operation)}"
    )


def _state(request: BatchRequest) -> BatchAdminState:
    """What the answer to a stored request is checked against."""
    return BatchAdminState(
        request.rrpid, request.request_digest, request.batch_id, request.maximum_items
    )


class Batches(StoredRequests[BatchRequest]):
    """Open, close, purge and query the merchant's settlement batches at the gateway."""

    noun = "batch requests"

    def administer(
        self,
        operation: int,
        batch_id: str = "",
        *,
        summary: bool = True,
        page: TransactionPage | None = None,
    ) -> gateway_admin_pb2.BatchAdminResData:
        """Open, close, purge or query a batch: the gateway's verified answer.

        A change of this batch still waiting for its answer is sent again instead, as it
        was stored (its page of transactions included), if it is this operation;
        ``OrderStateError`` if it is another. ``OutcomeUnknown`` when the outcome of the
        change stays unknown; a verified SET Error is raised (``PeerError``) after it is
        recorded. ``ValueError`` for a batch id no gateway takes, nothing stored.
        """
        _check_named(operation, batch_id)
        if operation == QUERY:
            return self._query(batch_id, summary, page)
        request, stored = self._waiting(batch_id), False
        if request is None:
            built = self._build(operation, batch_id, summary, page or TransactionPage(0, 0))
            request = self._store.add_batch_request(built)  # or one stored meanwhile
            stored = request.rrpid == built.rrpid
        if request.operation != operation:
            raise OrderStateError(_held_up(request, operation))
        if stored:
            log.info("%s: BatchAdminReq stored, sending", _named(request))
        else:
            log.info("%s: its outcome was unknown; sent again", _named(request))
        done = self._send(request)
        if done.state is OperationState.FAILED:
            raise PeerError(done.error_code)  # the gateway's, logged and recorded
        return gateway_admin_pb2.BatchAdminResData.FromString(done.answer)

    def _waiting(self, batch_id: str) -> BatchRequest | None:
        """The change of this batch waiting for its answer, if any."""
        waiting = [r for r in self._unanswered() if r.batch_id == batch_id]
        return waiting[0] if waiting else None

    def _build(
        self, operation: int, batch_id: str, summary: bool, page: TransactionPage
    ) -> BatchRequest:
        """A new BatchAdminReq, not stored yet."""
        request, state = build_batch_admin_request(
            self._credentials, self._keys.recipient(), self._merchant_id, operation,
            batch_id=batch_id, return_summary=summary,
            page=page if page.maximum_items else None,
        )  # fmt: skip
        return BatchRequest(
            rrpid=state.rrpid, operation=operation, batch_id=batch_id, return_summary=summary,
            starting_point=page.starting_point, maximum_items=page.maximum_items,
            state=OperationState.SENT, request=request.SerializeToString(),
            request_digest=state.request_digest, status=0, answer=b"", created_ms=0,
        )  # fmt: skip

    def _exchange(self, request: BatchRequest) -> BatchRequest:
        result = self._gateway.batch_admin(request.request, _state(request))
        data = result.data
        outcome.require_known(gateway_admin_pb2.BatchAdminStatus, data.status)
        done = self._store.settle_batch_request(
            request.rrpid, data.status == SUCCESS, data.status, data.SerializeToString(),
            data.batch_id, data.batch_status.closed,
        )  # fmt: skip
        log.info(
            "%s answered %s%s", _named(request),
            code_name(gateway_admin_pb2.BatchAdminStatus, data.status),
            f" for batch {data.batch_id}" if data.batch_id else "",
        )  # fmt: skip
        return done

    def _fail(self, request: BatchRequest, error_code: int) -> BatchRequest:
        return self._store.fail_batch_request(request.rrpid, error_code)

    def _rebuild(self, request: BatchRequest, error_code: int) -> BatchRequest:
        page = TransactionPage(request.starting_point, request.maximum_items)
        fresh = self._build(request.operation, request.batch_id, request.return_summary, page)
        return self._store.renew_batch_request(request, error_code, fresh)

    def _unanswered(self) -> list[BatchRequest]:
        return self._store.batch_requests(OperationState.SENT)

    def _named(self, request: BatchRequest) -> str:
        return _named(request)

    def _query(
        self, batch_id: str, summary: bool, page: TransactionPage | None
    ) -> gateway_admin_pb2.BatchAdminResData:
        request, state = build_batch_admin_request(
            self._credentials, self._keys.recipient(), self._merchant_id, QUERY,
            batch_id=batch_id, return_summary=summary, page=page,
        )  # fmt: skip
        data = self._gateway.batch_admin(request.SerializeToString(), state).data
        outcome.require_known(gateway_admin_pb2.BatchAdminStatus, data.status)
        if data.status == SUCCESS:
            self._store.record_batch(
                data.batch_id, data.status, data.batch_status.closed, data.SerializeToString()
            )
        log.info(
            "batch %s: request -> %s", data.batch_id or "-",
            code_name(gateway_admin_pb2.BatchAdminStatus, data.status),
        )  # fmt: skip
        return data
