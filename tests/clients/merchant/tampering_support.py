"""Gateway answers the merchant cannot verify, for merchant tests: the real gateway
decides and commits every request; what reaches the merchant is, while some are queued,
a tampered answer instead of the true one (someone between the two, or a broken gateway).

Tampering happens at the merchant's end of the channel (``clients.transport.Caller``),
so the merchant's own opener checks what arrives, and the gateway's books say what the
gateway really did (``gateway_hold``).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.message import Message

from clients.transport import Caller
from setcore.credentials import Credentials
from setcore.error_message import build_error
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setpay.v1 import authorization_pb2, capture_pb2, crypto_pb2, gateway_admin_pb2, services_pb2
from tests.clients.bank_support import RunningBank

_SERVICE = services_pb2.DESCRIPTOR.services_by_name["PaymentGatewayService"].full_name
# Each gateway method's request, to read the RRPID it carries.
_REQUESTS: dict[str, type[Message]] = {
    "Authorize": authorization_pb2.AuthorizeRequest,
    "AuthReversal": authorization_pb2.AuthReversalRequest,
    "Capture": capture_pb2.CaptureRequest,
    "CaptureReversal": capture_pb2.CaptureReversalRequest,
    "Credit": capture_pb2.CreditRequest,
    "CreditReversal": capture_pb2.CreditReversalRequest,
    "BatchAdmin": gateway_admin_pb2.BatchAdminRequest,
}

# The methods whose answers carry baggage (a capture token) beside the sealed part.
_WITH_BAGGAGE = frozenset({"Authorize", "AuthReversal"})


@dataclass(frozen=True)
class Exchange:
    """One request to a gateway method as sent, and its true answer."""

    method: str
    request: bytes
    rrpid: bytes
    answer: Any  # the method's response message


Tamper = Callable[[Any, Exchange, "TamperingGateway"], None]
"""Rewrites a response message in place (it receives the exchange it belongs to)."""


def _answer_field(response: Any) -> str:
    field = response.WhichOneof("result")
    assert field is not None and field != "error", "the gateway refused the request itself"
    return str(field)


def _flip_tag(sealed: crypto_pb2.Sealed) -> None:
    ciphertext = bytearray(sealed.ciphertext)
    ciphertext[-1] ^= 1
    sealed.ciphertext = bytes(ciphertext)


def undecryptable(response: Any, exchange: Exchange, gateway: TamperingGateway) -> None:
    """The answer with one bit of its sealed ciphertext (the AEAD tag) flipped."""
    field = _answer_field(response)
    if exchange.method in _WITH_BAGGAGE:
        envelope = crypto_pb2.SealedWithBaggage.FromString(getattr(response, field))
        _flip_tag(envelope.sealed)
        setattr(response, field, envelope.SerializeToString())
    else:
        sealed = crypto_pb2.Sealed.FromString(getattr(response, field))
        _flip_tag(sealed)
        setattr(response, field, sealed.SerializeToString())


def unparseable(response: Any, exchange: Exchange, gateway: TamperingGateway) -> None:
    """In place of the answer, bytes that are no sealed message at all."""
    setattr(response, _answer_field(response), b"\xff" * 64)


def unsigned_error(response: Any, exchange: Exchange, gateway: TamperingGateway) -> None:
    """In place of the answer, a SET Error naming our RRPID, signed by no one."""
    code = ErrorCode.ERROR_CODE_DECODING_FAILURE
    response.error.CopyFrom(build_error(None, code, rrpid=exchange.rrpid))


def error_for_another_request(response: Any, exchange: Exchange, gateway: TamperingGateway) -> None:
    """In place of the answer, a SET Error the gateway signed, for another RRPID."""
    code = ErrorCode.ERROR_CODE_DECODING_FAILURE
    response.error.CopyFrom(build_error(gateway.credentials, code, rrpid=new_id()))


def replayed(response: Any, exchange: Exchange, gateway: TamperingGateway) -> None:
    """In place of the answer, the gateway's true answer to the method's previous request:
    signed by the gateway and sealed to this merchant, for another RRPID."""
    earlier = gateway.exchanges[exchange.method][-2]
    response.CopyFrom(earlier.answer)


# Every way an answer can fail to verify that works on any gateway method.
EVERY_TAMPERING: tuple[Tamper, ...] = (
    undecryptable,
    unparseable,
    unsigned_error,
    error_for_another_request,
)


class TamperingGateway:
    """Stands between merchants and the real gateway for one test (``monkeypatch``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, bank: RunningBank) -> None:
        self.credentials: Credentials = bank.pki.gateway
        #: Per gateway method (``"Capture"``), every request sent and its true answer.
        self.exchanges: dict[str, list[Exchange]] = defaultdict(list)
        self._queued: dict[str, list[Tamper]] = defaultdict(list)
        real = Caller.call

        def call(caller: Caller, method: str, request: bytes, response_cls: Any, **kw: Any) -> Any:
            response = real(caller, method, request, response_cls, **kw)
            service, _, name = method.strip("/").rpartition("/")
            if service != _SERVICE or name not in _REQUESTS:
                return response
            rrpid = _REQUESTS[name].FromString(request).header.rrpid  # type: ignore[attr-defined]
            truth = response_cls.FromString(response.SerializeToString())
            exchange = Exchange(name, request, rrpid, truth)
            self.exchanges[name].append(exchange)
            if self._queued[name]:
                self._queued[name].pop(0)(response, exchange, self)
            return response

        monkeypatch.setattr(Caller, "call", call)

    def tamper(self, method: str, *tamperings: Tamper) -> None:
        """The next answers to ``method`` reach the merchant as these tamper them, in order."""
        self._queued[method].extend(tamperings)

    def left(self, method: str) -> int:
        """Tamperings queued for ``method`` and not used yet."""
        return len(self._queued[method])

    def sent(self, method: str) -> list[bytes]:
        """The requests sent to ``method``, in order."""
        return [e.request for e in self.exchanges[method]]


@dataclass(frozen=True)
class GatewayHold:
    """What the gateway's ledger holds for one order, and each kind of transfer on it."""

    amount: int
    pending: int
    captured: int
    capture_reversed: int
    credited: int
    credit_reversed: int
    transfers: dict[str, int]


def _ledger(bank: RunningBank) -> sqlite3.Connection:
    """The gateway's ledger, read-only."""
    url = bank.config.ledger_url()
    assert url.startswith("sqlite:")
    return sqlite3.connect(f"file:{url.removeprefix('sqlite:')}?mode=ro", uri=True)


def gateway_batches(bank: RunningBank, merchant_id: str) -> dict[str, str]:
    """The merchant's batches in the gateway's ledger (read-only): id -> open, closed or
    purged."""
    with closing(_ledger(bank)) as db:
        rows = db.execute(
            "SELECT b.id, b.status FROM batches b JOIN merchant_accounts m"
            " ON m.account_id = b.merchant_account_id WHERE m.merchant_id = ?",
            (merchant_id,),
        ).fetchall()
    return dict(rows)


def gateway_hold(bank: RunningBank, xid: bytes) -> GatewayHold:
    """The order's one hold in the gateway's ledger (read-only); fails if it has not one."""
    with closing(_ledger(bank)) as db:
        holds = db.execute(
            "SELECT id, amount, pending, captured, capture_reversed, credited, credit_reversed"
            " FROM holds WHERE xid = ?",
            (xid,),
        ).fetchall()
        assert len(holds) == 1, f"{len(holds)} holds for one order"
        hold_id, amount, pending, captured, capture_reversed, credited, credit_reversed = holds[0]
        kinds = db.execute(
            "SELECT kind, count(*) FROM transfers WHERE hold_id = ? GROUP BY kind", (hold_id,)
        ).fetchall()
    return GatewayHold(
        amount, pending, captured, capture_reversed, credited, credit_reversed, dict(kinds)
    )
