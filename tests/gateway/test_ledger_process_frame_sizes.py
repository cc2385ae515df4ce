"""How large and how deeply nested the real ledger operations' frames are, by kind: the
bounds the ledger process refuses frames beyond (``wire.OPERATION_BOUNDS``) must keep a
margin over them, or a legitimate operation would be refused.

Everything goes through the real gateway (both key profiles: RSA answers are larger):
authorizations, a capture, a credit and a credit reversal of the most items a request
carries, an authorization reversal, batch admin with the largest detail page, and the
operator's reads. Each operation the bank's ledger runs is pickled as a worker would send
it, and its size and nesting are kept by kind and rule.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.ledger import limits, wire
from setcore.cap_rev_or_cred import (
    CapRevOrCredItem,
    build_credit_request,
    build_credit_reversal_request,
    open_credit_response,
    open_credit_reversal_response,
)
from setcore.capture import CaptureItem, build_capture_request, open_capture_response
from setcore.gateway_admin import (
    TransactionPage,
    build_batch_admin_request,
    open_batch_admin_response,
)
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c
from setpay.v1 import gateway_admin_pb2 as g

from .actors import Merchant, World, authorize, eur, purchase, register_cardholder
from .actors import register_merchant as register

# Each bound is at least this many times what the real operations need.
MARGIN = 2
ITEMS = limits.MAX_ITEMS_PER_REQUEST
# Where the figures go, for the report (never read back by a test).
FIGURES = os.environ.get("SETPAY_FRAME_FIGURES")


def _rule(operation: Any) -> str:
    """The ledger rule an operation runs: a decision's own rule, not ``decide_once``."""
    func = operation.func if isinstance(operation, functools.partial) else operation
    decide = operation.keywords.get("decide") if isinstance(operation, functools.partial) else None
    if decide is not None:
        return f"{func.__name__}/{_rule(decide)}"
    return str(getattr(func, "__qualname__", type(func).__name__))


@pytest.fixture
def frames(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[tuple[str, str], list[int]]]:
    """(kind, rule): [largest payload bytes, deepest nesting, count] of every operation
    the bank's ledger runs while the test does."""
    seen: dict[tuple[str, str], list[int]] = {}
    store = world.running.ledger._store

    def recording(kind: int, method: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run(operation: Any) -> Any:
            payload = wire.dump_operation(operation)
            depth = wire.nesting(payload, 10**6)
            row = seen.setdefault((wire.KIND_NAMES[kind], _rule(operation)), [0, 0, 0])
            row[0], row[1], row[2] = max(row[0], len(payload)), max(row[1], depth), row[2] + 1
            return method(operation)

        return run

    monkeypatch.setattr(store, "execute", recording(wire.EXECUTE, store.execute))
    monkeypatch.setattr(store, "read", recording(wire.READ, store.read))
    yield seen


def _capture(world: World, merchant: Merchant, auths: list[Any]) -> tuple[bytes, str]:
    items = [CaptureItem(o.trans_ids, r.data.auth_tags.auth_rr_tags.rrpid,
                         r.baggage.cap_token, eur(800)) for o, r in auths]  # fmt: skip
    request, state = build_capture_request(
        merchant.credentials, merchant.gateway_kex.recipient(), items, merchant.merchant_id
    )
    result = open_capture_response(
        world.gateway.Capture(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    payloads = [item.cap_res_payload for item in result.data.cap_res_items]
    assert {a.CapCode.Name(p.cap_code) for p in payloads} == {"CAP_CODE_SUCCESS"}
    return state.rrpid, payloads[0].batch_id


def _items(auths: list[Any], amount: int, original: bytes = b"") -> list[CapRevOrCredItem]:
    return [CapRevOrCredItem(o.trans_ids, r.data.auth_tags.auth_rr_tags.rrpid,
                             r.baggage.cap_token, eur(amount), original_rrpid=original)
            for o, r in auths]  # fmt: skip


def test_the_bounds_hold_the_real_operations_with_room_to_spare(
    world: World, frames: dict[tuple[str, str], list[int]]
) -> None:
    merchant = register(world, f"M-{world.profile}-frames")
    cardholder = register_cardholder(world, limit=10_000_000)
    auths = []
    for _ in range(ITEMS):
        bought = purchase(merchant, cardholder, 1000)
        result = authorize(world, merchant, bought)
        assert result.auth_code == a.AUTH_CODE_APPROVED
        auths.append((bought.order, result))
    _, batch_id = _capture(world, merchant, auths)
    gateway = merchant.gateway_kex.recipient()
    request, state = build_credit_request(
        merchant.credentials, gateway, _items(auths, 100), merchant.merchant_id
    )
    credited = open_credit_response(
        world.gateway.Credit(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    assert {item.code for item in credited.items} == {c.CAP_REV_OR_CRED_CODE_SUCCESS}
    request, reversal = build_credit_reversal_request(
        merchant.credentials, gateway, _items(auths, 100, state.rrpid), merchant.merchant_id
    )
    reversed_ = open_credit_reversal_response(
        world.gateway.CreditReversal(request), merchant.credentials, reversal, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    assert {item.code for item in reversed_.items} == {c.CAP_REV_OR_CRED_CODE_SUCCESS}
    page = TransactionPage(0, limits.MAX_PAGE_ITEMS)
    for op, kw in (
        (g.BATCH_OPERATION_REQUEST, {"batch_id": batch_id, "page": page, "return_summary": True}),
        (g.BATCH_OPERATION_CLOSE, {"batch_id": batch_id, "page": page}),
        (g.BATCH_OPERATION_OPEN, {"page": page}),
    ):
        request, admin = build_batch_admin_request(
            merchant.credentials,
            gateway,
            merchant.merchant_id,
            op,
            **kw,  # type: ignore[arg-type]
        )
        answer = open_batch_admin_response(
            world.gateway.BatchAdmin(request), merchant.credentials, admin, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
        assert answer.data.status == g.BATCH_ADMIN_STATUS_SUCCESS
    ledger = world.running.ledger
    ledger.merchant_holds(merchant.merchant_id)
    ledger.totals()
    ledger.check_balanced()
    ledger.card_account(cardholder.account_id)
    ledger.batch_report(merchant.merchant_id, batch_id, max_items=limits.MAX_PAGE_ITEMS)

    kinds = {kind for kind, _ in frames}
    assert kinds == {"EXECUTE", "READ"}
    assert any("authorize" in rule for _, rule in frames)
    assert any("capture" in rule for _, rule in frames)
    if FIGURES:
        with open(FIGURES, "a", encoding="utf-8") as out:
            for (kind, rule), (size, depth, count) in sorted(frames.items()):
                print(world.profile, kind, rule, size, depth, count, file=out)
    for (kind, rule), (size, depth, _) in frames.items():
        bounds = wire.OPERATION_BOUNDS[getattr(wire, kind)]
        assert size * MARGIN <= bounds.most_bytes, (kind, rule, size)
        assert depth * MARGIN <= bounds.most_depth, (kind, rule, depth)
