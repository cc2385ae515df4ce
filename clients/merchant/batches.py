"""Settlement batches at the gateway: open, close and purge them, stored first; query them.

Opening, closing and purging change a batch at the gateway, and a repeat under a new
RRPID would not get the first one's answer: the gateway refuses a second close as
BATCH_CLOSED, a second purge as BATCH_UNKNOWN, a second open as BATCH_ALREADY_OPEN,
without naming the batch opened. So each is handled like a capture (``settlement``): its
BatchAdminReq is stored byte for byte before it is sent, a verified answer settles it, a
verified SET Error ends it "failed", and anything else (``outcome``) leaves it "sent",
outcome unknown: the command gets ``OutcomeUnknown``, and the same bytes go again when
the command is given again (the same operation on the same batch, or any open while an
open waits) and in ``resume`` (at start and in a serving merchant's rounds). The
gateway's RRPID idempotency answers them with what it decided the first time; one
refused as too old may be built afresh under a new RRPID (``renewal``).

While a change of a batch waits, another change of that batch is refused, naming the
one waiting: sent now, it could reach the gateway first and be refused for a state the
waiting one was about to make (a purge before its close).

A query changes nothing and the gateway keeps nothing of it: it is not stored, an answer
that does not verify is an error, and asking again is a new query.
"""

from __future__ import annotations

import logging

from clients.errors import ClientError, OrderStateError, OutcomeUnknown, TransportError
from clients.merchant import outcome, renewal
from clients.merchant.gateway_client import GatewayClient, GatewayKeys
from clients.merchant.records import BatchRequest, OperationState, short
from clients.merchant.store import MerchantStore
from hsm.errors import KeyBackendError
from setcore.credentials import Credentials
from setcore.errors import PeerError, SetcoreError
from setcore.gateway_admin import (
    BatchAdminResult,
    BatchAdminState,
    TransactionPage,
    build_batch_admin_request,
)
from setpay.v1 import gateway_admin_pb2

log = logging.getLogger("setpay.merchant")

QUERY = gateway_admin_pb2.BATCH_OPERATION_REQUEST
SUCCESS = gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS


def operation_name(operation: int) -> str:
    """A batch operation as the command line names it: open, close, purge, request."""
    name = gateway_admin_pb2.BatchOperation.Name(operation)
    return name.removeprefix("BATCH_OPERATION_").lower()


def _named(request: BatchRequest) -> str:
    """A batch request for the log and the command line: what, its id, which batch."""
    batch = f" of batch {request.batch_id}" if request.batch_id else ""
    return f"batch {operation_name(request.operation)} {short(request.rrpid)}{batch}"


def _state(request: BatchRequest) -> BatchAdminState:
    """What the answer to a stored request is checked against."""
    return BatchAdminState(
        request.rrpid, request.request_digest, request.batch_id, request.maximum_items
    )


class Batches:
    """Open, close, purge and query the merchant's settlement batches at the gateway."""

    def __init__(
        self,
        store: MerchantStore,
        credentials: Credentials,
        gateway: GatewayClient,
        gateway_keys: GatewayKeys,
        merchant_id: str,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._gateway = gateway
        self._keys = gateway_keys
        self._merchant_id = merchant_id

    def administer(
        self,
        operation: int,
        batch_id: str = "",
        *,
        summary: bool = True,
        page: TransactionPage | None = None,
    ) -> BatchAdminResult:
        """Open, close, purge or query a batch: the gateway's verified answer.

        A change of this batch still waiting for its answer is sent again instead, as it
        was stored (its page of transactions included), if it is this operation;
        ``OrderStateError`` if it is another. ``OutcomeUnknown`` when the outcome of the
        change stays unknown; a verified SET Error is raised (``PeerError``) after it is
        recorded.
        """
        if operation == QUERY:
            return self._query(batch_id, summary, page)
        waiting = self._waiting(operation, batch_id)
        if waiting is not None:
            log.info("%s: its outcome was unknown; sent again", _named(waiting))
            return self._send(waiting)[1]
        request = self._store.add_batch_request(
            self._build(operation, batch_id, summary, page or TransactionPage(0, 0))
        )
        log.info("%s: BatchAdminReq stored, sending", _named(request))
        return self._send(request)[1]

    def _waiting(self, operation: int, batch_id: str) -> BatchRequest | None:
        """The change of this batch waiting for its answer, if it is ``operation``."""
        for request in self._store.batch_requests(OperationState.SENT):
            if request.batch_id != batch_id:
                continue
            if request.operation != operation:
                raise OrderStateError(
                    f"{_named(request)} was sent and is not answered yet (outcome unknown, "
                    f"will retry): give batch {operation_name(request.operation)} again, or "
                    f"let serve send it, before {operation_name(operation)}"
                )
            return request
        return None

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

    def _send(
        self, request: BatchRequest, *, renewable: bool = True
    ) -> tuple[BatchRequest, BatchAdminResult]:
        """Send a stored request; it and the gateway's verified answer, once saved.

        As ``Settlement._send`` for an operation: a verified SET Error fails it (and is
        raised), one refusing it as too old may build it afresh once (``renewable``), and
        anything else raises ``OutcomeUnknown`` and leaves it sent.
        """
        try:
            result = self._gateway.batch_admin(request.request, _state(request))
        except outcome.GATEWAY_FAILURES as exc:
            if isinstance(exc, PeerError) and outcome.is_refusal(exc):
                if renewable and renewal.refused_as_stale(exc):
                    return self._renew(request, exc)
                self._store.fail_batch_request(request.rrpid, exc.code)
                log.warning("%s refused by the gateway: %s", _named(request), exc.code_name)
                raise
            raise outcome.pending(log, _named(request), exc) from exc
        data = result.data
        self._store.settle_batch_request(
            request.rrpid, data.status == SUCCESS, data.status, data.SerializeToString(),
            data.batch_id, data.batch_status.closed,
        )  # fmt: skip
        log.info(
            "%s answered %s%s", _named(request),
            gateway_admin_pb2.BatchAdminStatus.Name(data.status),
            f" for batch {data.batch_id}" if data.batch_id else "",
        )  # fmt: skip
        return self._store.batch_request(request.rrpid), result

    def _renew(
        self, request: BatchRequest, error: PeerError
    ) -> tuple[BatchRequest, BatchAdminResult]:
        """A request refused as too old: built afresh and sent, or left waiting."""
        if not renewal.may_renew(request.created_ms):
            # An earlier sending of these bytes may still be inside the gateway.
            raise outcome.pending(log, _named(request), error) from error
        page = TransactionPage(request.starting_point, request.maximum_items)
        fresh = self._build(request.operation, request.batch_id, request.return_summary, page)
        self._store.renew_batch_request(request, error.code, fresh)
        log.info(
            "%s refused as too old, so never applied: sent afresh as %s",
            _named(request), short(fresh.rrpid),
        )  # fmt: skip
        return self._send(self._store.batch_request(fresh.rrpid), renewable=False)

    def _query(
        self, batch_id: str, summary: bool, page: TransactionPage | None
    ) -> BatchAdminResult:
        request, state = build_batch_admin_request(
            self._credentials, self._keys.recipient(), self._merchant_id, QUERY,
            batch_id=batch_id, return_summary=summary, page=page,
        )  # fmt: skip
        result = self._gateway.batch_admin(request.SerializeToString(), state)
        data = result.data
        if data.status == SUCCESS:
            self._store.record_batch(
                data.batch_id, data.status, data.batch_status.closed, data.SerializeToString()
            )
        log.info(
            "batch %s: request -> %s", data.batch_id or "-",
            gateway_admin_pb2.BatchAdminStatus.Name(data.status),
        )  # fmt: skip
        return result

    def resume(self, *, stored_before_ms: int | None = None) -> list[BatchRequest]:
        """Send again, byte for byte, every batch change still waiting (one refused as
        too old may be built afresh); those now answered. ``stored_before_ms``: only
        those stored before then (not one a command may still be sending).

        As ``Settlement.resume``: each on its own, logged when it stays waiting; no answer
        at all ends the round.
        """
        waiting = [
            r
            for r in self._store.batch_requests(OperationState.SENT)
            if stored_before_ms is None or r.created_ms < stored_before_ms
        ]
        answered = []
        for number, request in enumerate(waiting):
            try:
                answered.append(self._send(request)[0])
            except OutcomeUnknown as exc:  # logged as it was raised
                if isinstance(exc.cause, TransportError):
                    log.warning(
                        "gateway unreachable: %d unanswered batch requests wait for the next "
                        "resume", len(waiting) - number,
                    )  # fmt: skip
                    break
            except PeerError:  # a refusal, recorded and logged as it was raised
                continue
            except (ClientError, SetcoreError, KeyBackendError) as exc:
                log.error("%s not resumed, still waiting: %s", _named(request), exc)
        return answered
