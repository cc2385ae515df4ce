"""Requests stored before ``setpay merchant renew`` and answered after it.

A request waiting for the gateway (sent while it was away) names the certificates it was
built with: the gateway seals its answer to the old key-exchange key and names the old
signature certificate, and stores that answer for every resend. The renewed merchant
must open it with the old key and take it as its own, or the request waits for ever and
the gateway keeps what it did (a hold on the card). An answer sealed to, or naming, a
certificate that is not the merchant's own is still refused.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clients.errors import OutcomeUnknown
from clients.merchant.config import AnswerMode
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import OperationState, Order, OrderState
from clients.merchant.runtime import Merchant
from gateway.servicer import PaymentGatewayServicer
from setcore.authorization import AUTH_RES_BAGGAGE_CT, AUTH_RES_CT
from setcore.envelope import Recipient
from setcore.errors import ErrorCode, ProtocolError
from setcore.gateway_exchange import check_names_us, open_gateway_response
from setcore.link import seal_with_baggage
from setcore.pki.roles import MERCHANT, CertificateUsage
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import GatewayOutage, restart
from tests.clients.merchant.tampering_support import gateway_hold
from tests.clients.test_purchase_flow import buy, offer

# How long the renewed merchant's worker may take to send a waiting authorization again
# and save its answer (it sends at its start, then every few seconds; this bounds a hang).
ANSWERED_SECONDS = 20.0


def _renew(directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(["merchant", "--dir", str(directory), "renew"], capsys)
    assert (status, err) == (0, "")


def _recipient(merchant: Merchant) -> Recipient:
    """What the gateway seals to when a request names the merchant's current key."""
    own = merchant.credentials
    return merchant.trust.verify_chain(
        own.key_exchange_cert or b"", own.chain, MERCHANT, CertificateUsage.KEY_EXCHANGE
    ).recipient()


def _authorized(merchant: Merchant, xid: bytes) -> Order:
    give_up = time.monotonic() + ANSWERED_SECONDS
    order = merchant.store.order(xid)
    while order.state is OrderState.AUTHORIZING and time.monotonic() < give_up:
        time.sleep(0.2)
        order = merchant.store.order(xid)
    return order


def test_an_authorization_and_a_reversal_stored_before_a_renewal_are_answered_after_it(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """With the gateway away: one order's AuthReq waits, another's full reversal waits.
    The merchant renews and starts again; both answers (EncB, sealed to the old key) are
    opened and saved, and the gateway's books agree."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-renew-pending", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    wallet = make_wallet(merchant)
    old = (merchant.credentials.signature_thumb, merchant.credentials.key_exchange_thumb)
    reversed_xid = bytes.fromhex(buy(wallet, offer(merchant, 600)).xid)
    outage.stop()
    record = buy(wallet, offer(merchant, 900))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    waiting_xid = bytes.fromhex(record.xid)
    with pytest.raises(OutcomeUnknown):
        merchant.settlement.reverse_authorization(reversed_xid)
    merchant.close()

    _renew(tmp_path / "m-renew-pending", capsys)
    outage.serve(PaymentGatewayServicer(bank.bank))
    again = restart(tmp_path / "m-renew-pending")
    try:
        renewed = again.credentials
        assert renewed.signature_thumb not in old and renewed.key_exchange_thumb not in old
        (reversal,) = again.store.operations(reversed_xid)
        assert reversal.state is OperationState.SUCCEEDED  # resumed as the merchant started
        assert again.store.order(reversed_xid).state is OrderState.REVERSED
        assert gateway_hold(bank, reversed_xid).pending == 0
        order = _authorized(again, waiting_xid)
        assert (order.state, order.unverified) == (OrderState.AUTHORIZED, 0)
        assert order.authorization is not None and order.authorization.amount.minor == 900
        assert gateway_hold(bank, waiting_xid).amount == 900
    finally:
        again.close()
        outage.release()


def test_a_capture_stored_before_a_renewal_is_answered_after_it(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-renew-capture", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 700)).xid)
    outage.stop()
    with pytest.raises(OutcomeUnknown):
        merchant.settlement.capture(xid)
    merchant.close()

    _renew(tmp_path / "m-renew-capture", capsys)
    outage.serve(PaymentGatewayServicer(bank.bank))
    again = restart(tmp_path / "m-renew-capture")
    try:
        (capture,) = again.store.operations(xid)
        assert (capture.state, capture.result_amount) == (OperationState.SUCCEEDED, 700)
        assert gateway_hold(bank, xid).captured == 700
    finally:
        again.close()
        outage.release()


def test_answers_to_certificates_not_the_merchants_own_are_still_refused(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """After a renewal the merchant opens what is sealed to its old key-exchange
    certificate and takes its old signature certificate as its own, and nothing more: an
    answer sealed to another's key-exchange certificate is WRONG_RECIPIENT, one naming
    another's signature certificate MERCHANT_MISMATCH."""
    before = make_merchant("m-renew-strict")
    stranger = make_merchant("m-renew-stranger")
    old_signature, old_recipient = before.credentials.signature_thumb, _recipient(before)
    before.close()
    _renew(tmp_path / "m-renew-strict", capsys)
    after = Merchant.open(load_merchant_config(tmp_path / "m-renew-strict"))
    try:
        after.revocation.refresh()  # as serving would, before any chain is checked
        identity = after.gateway.gateway_identity()
        gateway = bank.pki.gateway
        xid, rrpid = b"x" * 32, b"r" * 32

        def opened(recipient: Recipient) -> bytes:
            envelope = seal_with_baggage(
                gateway.backend, gateway.signature_key, gateway.signature_thumb,
                AUTH_RES_CT, b"the answer", AUTH_RES_BAGGAGE_CT, b"", recipient,
                xid=xid, rrpid=rrpid, bundle=gateway.bundle(),
            ).SerializeToString()  # fmt: skip
            t1, _, _ = open_gateway_response(
                after.credentials, after.trust, envelope, AUTH_RES_CT, AUTH_RES_BAGGAGE_CT,
                xid=xid, rrpid=rrpid, gateway_identity=identity,
            )  # fmt: skip
            return t1

        assert opened(old_recipient) == b"the answer"  # sealed to the key renewed since
        assert opened(_recipient(after)) == b"the answer"  # and to the newest
        with pytest.raises(ProtocolError) as sealed_to_another:
            opened(_recipient(stranger))
        assert sealed_to_another.value.code == ErrorCode.ERROR_CODE_WRONG_RECIPIENT

        digest = b"d" * 32
        check_names_us(after.credentials, old_signature, digest, digest)
        check_names_us(after.credentials, after.credentials.signature_thumb, digest, digest)
        for others in (
            stranger.credentials.signature_thumb,
            after.credentials.key_exchange_thumb or b"",  # ours, but no signature certificate
        ):
            with pytest.raises(ProtocolError) as named_another:
                check_names_us(after.credentials, others, digest, digest)
            assert named_another.value.code == ErrorCode.ERROR_CODE_MERCHANT_MISMATCH
    finally:
        after.close()
