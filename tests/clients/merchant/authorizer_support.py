"""A Purchase's authorization and the worker's scan of the same order, run against each
other: the Purchase's AuthReq is held at the gateway until the scan waits at the order's
lock, then both go on."""

from __future__ import annotations

import threading
import time

import pytest

from clients.merchant.runtime import Merchant
from setcore.authorization import AuthRequestState, AuthResult

# Long enough for a loaded machine; a wait that passes it is a failure, not a slow run.
WAIT_SECONDS = 20.0
# How often the race polls for the scan reaching the order's lock.
POLL_SECONDS = 0.01


def purchase_against_scan(
    merchant: Merchant, xid: bytes, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, object], list[bytes]]:
    """Run ``authorize(xid)`` and ``resume()`` so that the scan reads the order while the
    Purchase is sending it; what each returned (``purchase``, ``scan``) and the AuthReqs
    that reached the gateway client, in order."""
    inside, release = threading.Event(), threading.Event()
    sent: list[bytes] = []
    real = merchant.gateway.authorize

    def held(request: bytes, state: AuthRequestState, **deadline: float) -> AuthResult:
        sent.append(request)
        inside.set()
        assert release.wait(WAIT_SECONDS), "never released"
        return real(request, state, **deadline)

    monkeypatch.setattr(merchant.gateway, "authorize", held)
    answers: dict[str, object] = {}
    purchase = threading.Thread(
        target=lambda: answers.update(purchase=merchant.authorizer.authorize(xid))
    )
    scan = threading.Thread(target=lambda: answers.update(scan=merchant.authorizer.resume()))
    purchase.start()
    try:
        assert inside.wait(WAIT_SECONDS), "the Purchase's AuthReq was never sent"
        scan.start()
        # The scan has read the order and waits for it (a second thread at its lock).
        give_up = time.monotonic() + WAIT_SECONDS
        while merchant.authorizer._locks.get(xid, (None, [0]))[1][0] < 2:
            assert time.monotonic() < give_up, "the scan never came to the order"
            time.sleep(POLL_SECONDS)
    finally:
        release.set()
        purchase.join(WAIT_SECONDS)
        if scan.ident is not None:  # started
            scan.join(WAIT_SECONDS)
    return answers, sent
