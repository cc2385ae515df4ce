"""An unreadable answer counted by another sender while a request is being built afresh.

A request refused as too old is built afresh unless its bytes had a verified answer of a
result code this release cannot read (``test_unreadable_answers_kept``). Two senders of
the same bytes (a command and a serving merchant's round) may interleave: one reads the
row, is refused as too old and builds the request afresh, while the other gets the
gateway's answer, one this release cannot read, and counts it. The store decides inside
the transaction that would store the request built afresh, so the count made while the
first was building is seen there: nothing is stored afresh, and the request waits as the
answer it had requires. Here the second sender's count is made from inside the first
one's building, the moment a check made before it would have missed it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from clients.errors import OutcomeUnknown, SignerGone
from clients.merchant.records import OperationState, OrderState
from clients.merchant.store import MerchantStore
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.store_support import purchased
from tests.clients.merchant.test_unreadable_answers_kept import _held_back, _stale_once
from tests.clients.merchant.test_unreadable_result_codes import bought_unreadably
from tests.clients.test_purchase_flow import buy, offer


def _counted_while_building(
    monkeypatch: pytest.MonkeyPatch, owner: object, builder: str, count: Callable[[], None]
) -> list[int]:
    """``owner.builder`` calls ``count`` (the other sender's unreadable answer) before its
    second building, the one that builds the refused request afresh; the calls, counted."""
    real = getattr(owner, builder)
    calls = [0]

    def building(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 2:
            count()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, builder, building)
    return calls


def test_a_capture_answered_unreadably_while_built_afresh_is_not_stored_afresh(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    merchant = make_merchant("m-unread-rebuild-cap")
    store = merchant.store
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)

    def other_sender_counts() -> None:
        (sent,) = store.operations(state=OperationState.SENT)
        assert sent.unreadable == 0  # what the refused sender read
        store.postpone(sent, 0, 1, unreadable=True)

    built = _counted_while_building(
        monkeypatch, merchant.settlement, "_request", other_sender_counts
    )
    sent = _stale_once(monkeypatch, merchant.settlement._gateway, "capture")
    with pytest.raises(OutcomeUnknown, match="neither built afresh nor ended failed"):
        merchant.settlement.capture(xid, 400)
    assert (built, sent) == ([2], [1])  # built afresh, but neither stored nor sent
    (only,) = store.operations(xid)
    assert (only.state, only.error_code, only.unreadable) == (OperationState.SENT, 0, 1)
    assert len(_held_back(caplog, f"capture {only.rrpid.hex()[:8]}")) == 1


def test_an_authreq_answered_unreadably_while_built_afresh_is_not_replaced(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    merchant = make_merchant("m-unread-rebuild-auth")
    store = merchant.store
    merchant.authorizer.stop(timeout=10)
    wallet = make_wallet(merchant)
    seen: list[bytes] = []

    def other_sender_counts() -> None:
        (order,) = merchant.authorizer.pending()
        assert order.unreadable == 0  # what the refused sender read
        seen.append(order.auth_rrpid or b"")
        store.postpone(order, 0, 1, unreadable=True)

    built = _counted_while_building(monkeypatch, merchant.authorizer, "_build", other_sender_counts)
    sent = _stale_once(monkeypatch, merchant.authorizer._gateway, "authorize")
    xid = bytes.fromhex(buy(wallet, offer(merchant, 1234)).xid)  # the purchase authorizes
    assert (built, sent) == ([2], [1])
    held = store.order(xid)
    assert (held.state, held.error_code, held.unreadable) == (OrderState.AUTHORIZING, 0, 1)
    assert [held.auth_rrpid] == seen  # the AuthReq the gateway answered, not replaced
    assert len(_held_back(caplog, f"order {held.short_id}")) == 1


def test_an_authreq_answered_unreadably_whose_signer_is_gone_stays_pending(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused as too old once the gateway dropped its unreadable answer, when no AuthReq
    can be built afresh any more (the PI's signer gone): the gateway decided these bytes,
    so the order stays authorizing, never ends failed as if they were never applied."""
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    merchant = make_merchant("m-unread-signer-gone")
    wallet = make_wallet(merchant)
    xid = bought_unreadably(merchant, wallet, monkeypatch)

    def signer_gone(order: object) -> object:
        raise SignerGone("the signature certificate its PI names has ended")

    monkeypatch.setattr(merchant.authorizer, "_signing_as", signer_gone)
    _stale_once(monkeypatch, merchant.authorizer._gateway, "authorize")
    done = merchant.authorizer.authorize(xid)
    assert (done.state, done.error_code, done.unreadable) == (OrderState.AUTHORIZING, 0, 1)
    assert len(_held_back(caplog, f"order {done.short_id}")) == 1


def test_an_answer_to_a_replaced_authreq_is_not_counted_on_the_new_one(tmp_path: Path) -> None:
    """A second sender of the AuthReq that was replaced, counting its answer once the
    replacement is stored, leaves the new AuthReq's count alone (the new one was never
    answered), and the new AuthReq starts with no wait."""
    store = MerchantStore(tmp_path / "merchant.db")
    try:
        xid = purchased(store)
        old = store.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
        store.postpone(old, 2, 12_345)
        store.renew_auth_request(xid, b"a" * 32, b"b" * 32, b"auth-req-2", b"dig2")
        store.postpone(old, 0, 1, unreadable=True)
        now = store.order(xid)
        assert now.auth_rrpid == b"b" * 32
        assert (now.unreadable, now.unverified, now.retry_after_ms) == (0, 0, 0)
    finally:
        store.close()


def test_an_authreq_answered_unreadably_while_found_unbuildable_is_not_ended_failed(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other sender counts its unreadable answer while this one, refused as too old,
    finds no AuthReq can be built any more (the PI's signer gone): the order is not
    ended failed either, since the store tells inside the transaction that would."""
    merchant = make_merchant("m-unread-fail-race")
    store = merchant.store
    merchant.authorizer.stop(timeout=10)
    wallet = make_wallet(merchant)

    def counted_then_gone() -> None:
        (waiting,) = merchant.authorizer.pending()
        store.postpone(waiting, 0, 1, unreadable=True)
        raise SignerGone("the signature certificate its PI names has ended")

    built = _counted_while_building(monkeypatch, merchant.authorizer, "_build", counted_then_gone)
    _stale_once(monkeypatch, merchant.authorizer._gateway, "authorize")
    xid = bytes.fromhex(buy(wallet, offer(merchant, 1234)).xid)
    assert built == [2]
    held = store.order(xid)
    assert (held.state, held.error_code, held.unreadable) == (OrderState.AUTHORIZING, 0, 1)
