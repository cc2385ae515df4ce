"""What a wallet hears from Purchase and Inquiry when PReqs race each other or a PInit,
and about an order whose whole authorization was given back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from clients.merchant.checkout import Checkout
from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from clients.transport import Caller
from clients.wallet.credentials import card_credentials
from clients.wallet.runtime import Wallet
from setcore.errors import ErrorCode, PeerError
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import (
    MerchantOffer,
    build_pinit_request,
    build_purchase_request,
    open_pinit_response,
    open_purchase_response,
)
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.tampering_support import gateway_hold
from tests.clients.merchant.test_merchant_service import SERVICE, _caller
from tests.clients.test_purchase_flow import buy, offer

# Bounds each wait of a PReq held between its verification and its recording, and of the
# test for it: far longer than any step takes, short enough that a hang fails the test.
HELD_SECONDS = 10.0


class _PReq:
    """One wallet's PReq for a fresh offer, sent by hand (the wallet's own client sends
    one at a time): PInit answered, the PReq built, ready to be sent any number of times."""

    def __init__(self, merchant: Merchant, wallet: Wallet, amount: int) -> None:
        initiation = offer(merchant, amount)
        card = wallet.card(WALLET_PASSPHRASE).card()
        config = wallet.config
        credentials = card_credentials(wallet.backend, config.key_label, config.chain, card)
        wallet.revocation.ensure_fresh()
        self.trust = wallet.trust
        self._caller: Caller = _caller(
            merchant.port, wallet.config.require_merchant().channel().ca_pem or b""
        )
        self._pinit, self._pinit_state = build_pinit_request(
            card.pan, "setpay", b"lid-c", lid_m=initiation.lid_m
        )
        offered = self.pinit()
        self.xid = offered.trans_ids.xid
        self.request, self.state = build_purchase_request(
            credentials, offered, initiation.order(), card, self._pinit_state
        )

    def pinit(self) -> MerchantOffer:
        """PInit for the offer's LID-M (again): the merchant's verified offer."""
        response = self._caller.call(
            f"{SERVICE}/PInit", self._pinit.SerializeToString(), purchase_pb2.PInitResponse,
            deadline=5,
        )  # fmt: skip
        return open_pinit_response(response, self._pinit_state, self.trust)

    def send(self) -> purchase_pb2.PurchaseResponse:
        """The PReq, as built once."""
        return self._caller.call(
            f"{SERVICE}/Purchase", self.request.SerializeToString(),
            purchase_pb2.PurchaseResponse, deadline=30,
        )  # fmt: skip


def _hold_after_verifying(
    monkeypatch: pytest.MonkeyPatch, merchant: Merchant, wait: Callable[[], object]
) -> None:
    """Each PReq, once its chain is checked and before it is recorded, calls ``wait``."""
    checkout: Checkout = merchant.checkout
    check_chain = checkout._with_current_revocation

    def held(check: Callable[[], VerifiedCertificate]) -> VerifiedCertificate:
        verified = check_chain(check)
        wait()
        return verified

    monkeypatch.setattr(checkout, "_with_current_revocation", held)


def test_the_same_preq_sent_twice_at_once_is_answered_twice_and_authorized_once(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both verified before either is recorded: the second to record finds the first's
    and answers as a repeat (SET: a duplicate is not an error), never PI_PREVIOUSLY_USED."""
    merchant = make_merchant("m-preq-twice")
    preq = _PReq(merchant, make_wallet(merchant), 300)
    both_verified = threading.Barrier(2, timeout=HELD_SECONDS)
    _hold_after_verifying(monkeypatch, merchant, both_verified.wait)
    answers: list[purchase_pb2.PurchaseResponse] = []
    senders = [threading.Thread(target=lambda: answers.append(preq.send())) for _ in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(HELD_SECONDS * 3)
    assert [a.WhichOneof("result") for a in answers] == ["p_res", "p_res"]
    for answer in answers:
        opened = open_purchase_response(answer, preq.state, preq.trust)
        assert opened.payloads[0].completion_code in (
            purchase_pb2.COMPLETION_CODE_AUTHORIZATION_PERFORMED,
            purchase_pb2.COMPLETION_CODE_ORDER_RECEIVED,  # the other still authorizing
        )
    order = merchant.store.order(preq.xid)
    assert order.state is OrderState.AUTHORIZED
    assert gateway_hold(bank, preq.xid).transfers == {"authorization": 1}


def test_a_preq_whose_order_a_pinit_dropped_meanwhile_is_unknown_xid(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A PInit for the same LID-M while the PReq is verified gives the unpaid order a new
    XID: the PReq's XID is no longer known (SET-PROTOCOL.md 5.5), a refusal like any
    other, not an unexpected failure logged with its stack."""
    merchant = make_merchant("m-preq-pinit")
    preq = _PReq(merchant, make_wallet(merchant), 300)
    verified, offered_again = threading.Event(), threading.Event()

    def wait() -> None:
        verified.set()
        assert offered_again.wait(HELD_SECONDS)

    _hold_after_verifying(monkeypatch, merchant, wait)
    answers: list[purchase_pb2.PurchaseResponse] = []
    sender = threading.Thread(target=lambda: answers.append(preq.send()))
    sender.start()
    assert verified.wait(HELD_SECONDS)
    assert preq.pinit().trans_ids.xid != preq.xid
    offered_again.set()
    sender.join(HELD_SECONDS * 3)

    (answer,) = answers
    with pytest.raises(PeerError) as refused:  # a signed Error about this very PReq
        open_purchase_response(answer, preq.state, preq.trust)
    assert refused.value.code == ErrorCode.ERROR_CODE_UNKNOWN_XID
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_fully_reversed_order_is_reported_rejected_with_nothing_authorized(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """Not "authorization performed, approved, for 0" (SET-PROTOCOL.md 5.6, 7.7)."""
    merchant = make_merchant("m-reversed-inquiry")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 800))
    assert (record.completion, record.auth_amount) == (
        "COMPLETION_CODE_AUTHORIZATION_PERFORMED", 800,
    )  # fmt: skip
    merchant.settlement.reverse_authorization(bytes.fromhex(record.xid))
    assert merchant.store.order(bytes.fromhex(record.xid)).state is OrderState.REVERSED

    answered = wallet.shopper(WALLET_PASSPHRASE).inquire(
        wallet.config.require_merchant(), record.xid[:8]
    )
    assert answered.completion == "COMPLETION_CODE_ORDER_REJECTED"
    assert answered.auth_code == "AUTH_CODE_UNSPECIFIED"
    assert (answered.auth_amount, answered.captured, answered.credited) == (0, 0, 0)
