"""A Purchase waits briefly (``SLOT_WAIT_SECONDS``) for a place to wait on the gateway
before it is left to the worker: with a healthy gateway none is diverted; with a held one
the overflow is, and counted (``metrics.purchase_diverted``).

Before: the place was tried once (``acquire(blocking=False)``), and Purchases were
diverted under ordinary load with a gateway answering in 10 ms. A unit test of
``Checkout.purchase``: the PReq's checks and the authorizer are doubles.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace as Ns
from typing import Any

import pytest

from clients.merchant import checkout
from clients.merchant.config import AnswerMode
from clients.merchant.records import OrderState

# The server's threads: two may wait on the gateway (``gateway_waits``).
THREADS = 4
# A healthy gateway's round trip.
GATEWAY_SECONDS = 0.02
# Bounds every wait on another thread.
WAIT_SECONDS = 20.0


class _Order:
    state = OrderState.INITIATED
    xid, short_id, chall_m, description, brand_id = b"x" * 20, "x", b"", "", "b"
    amount = Ns(to_proto=lambda: None)

    def trans_ids_proto(self) -> None:
        return None


def _checkout(
    monkeypatch: pytest.MonkeyPatch, authorize: Any
) -> tuple[Any, list[int], list[object]]:
    order = _Order()
    view = Ns(
        oi_data=Ns(trans_ids=Ns(xid=order.xid), rrpid=b"r", chall_c=b"c"),
        oi_bytes=b"", pi_bytes=b"",
    )  # fmt: skip
    monkeypatch.setattr(checkout, "open_purchase_request", lambda request: view)
    monkeypatch.setattr(checkout, "MerchantOrder", lambda *a: None)
    monkeypatch.setattr(
        checkout, "verify_purchase", lambda *a: (time.sleep(0.003), Ns(thumbprint=b"t" * 32))[1]
    )
    diverted: list[int] = []
    monkeypatch.setattr(checkout.metrics, "purchase_diverted", lambda: diverted.append(1))
    store = Ns(order=lambda xid: order, record_purchase=lambda *a: order)
    # What is left to the worker, counted apart from the metric: the code before the
    # metric existed diverted without counting.
    submitted: list[object] = []
    authorizer = Ns(authorize=lambda xid, **kw: authorize(order), submit=submitted.append)
    made = checkout.Checkout(
        None, None, store, None, authorizer, Ns(ensure_fresh=lambda: None), "b",
        AnswerMode.AFTER_AUTHORIZATION, THREADS,
    )  # fmt: skip
    monkeypatch.setattr(made, "_pres", lambda *a: None)
    return made, diverted, submitted


def _at_once(made: Any, count: int) -> list[threading.Thread]:
    threads = [
        threading.Thread(
            target=made.purchase, args=(None,), kwargs={"answer_by": time.monotonic() + 44}
        )
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads


def test_with_a_healthy_gateway_no_purchase_is_diverted(monkeypatch: pytest.MonkeyPatch) -> None:
    made, diverted, submitted = _checkout(
        monkeypatch, lambda order: (time.sleep(GATEWAY_SECONDS), order)[1]
    )
    for _ in range(10):  # more Purchases at once than places, again and again
        for thread in _at_once(made, THREADS):
            thread.join(WAIT_SECONDS)
    assert (diverted, submitted) == ([], [])


def test_with_a_held_gateway_the_overflow_is_diverted_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, entered = threading.Event(), threading.Semaphore(0)

    def held(order: Any) -> Any:
        entered.release()
        release.wait(WAIT_SECONDS)
        return order

    made, diverted, submitted = _checkout(monkeypatch, held)
    places = checkout.gateway_waits(THREADS)
    threads = _at_once(made, places)
    for _ in range(places):
        assert entered.acquire(timeout=WAIT_SECONDS)
    started = time.monotonic()
    made.purchase(None, answer_by=time.monotonic() + 44)  # no place comes free
    took = time.monotonic() - started
    release.set()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert diverted == [1]
    assert len(submitted) == 1
    assert took < checkout.SLOT_WAIT_SECONDS + 1.0
