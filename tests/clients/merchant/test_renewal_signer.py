"""An order paid before ``merchant renew`` whose AuthReq is built after it: signed under
the certificate that signed its PInitRes, the one the cardholder's PI names (SET 9.3.1),
not the renewed one. Against the real bank and its CA.

Before: every AuthReq was signed with the newest key, and the gateway refused one for
such an order with a signed MERCHANT_MISMATCH: the order failed after the wallet had
been told "order received"."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import pytest

from clients.identity import certified_versions
from clients.merchant import authorizer as authorizer_module
from clients.merchant.config import AnswerMode
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import OrderState
from clients.merchant.registration import SIGNATURE_LABEL
from clients.merchant.runtime import Merchant
from gateway.servicer import PaymentGatewayServicer
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode
from setcore.pki.certificate import load_certificate
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import WELL_PAST_MS, GatewayOutage, restart
from tests.clients.test_purchase_flow import buy, offer
from tests.clocks import clocks_moved


def _renew(directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(["merchant", "--dir", str(directory), "renew"], capsys)
    assert (status, err) == (0, "")


def _renewed(merchant: Merchant, capsys: pytest.CaptureFixture[str]) -> Merchant:
    """``merchant`` stopped, renewed with ``setpay merchant renew``, and serving again."""
    directory = merchant.config.base_dir
    merchant.close()
    _renew(directory, capsys)
    return restart(directory)


def test_an_order_paid_before_a_renewal_is_authorized_under_the_certificate_its_pi_names(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """PInit and Purchase before the renewal; the merchant stops before its worker builds
    the AuthReq, is renewed, and builds it after: signed with the earlier key, approved."""
    merchant = make_merchant("m-renew-signer", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)  # the AuthReq is not built before the renewal
    old_thumb = merchant.credentials.signature_thumb
    record = buy(make_wallet(merchant), offer(merchant, 900))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    xid = bytes.fromhex(record.xid)
    assert merchant.store.order(xid).state is OrderState.PURCHASED
    assert merchant.store.order(xid).signer_thumb == old_thumb

    again = _renewed(merchant, capsys)
    try:
        assert again.credentials.signature_thumb != old_thumb
        done = again.authorizer.authorize(xid)
        # The gateway approves only an AuthReq signed under the certificate the PI names.
        assert (done.state, done.error_code) == (OrderState.AUTHORIZED, 0)
        assert done.signer_thumb == old_thumb
        # A purchase after the renewal is offered, signed and authorized under the new one.
        later = buy(make_wallet(again), offer(again, 700))
        fresh = again.authorizer.authorize(bytes.fromhex(later.xid))
        assert fresh.state is OrderState.AUTHORIZED
        assert fresh.signer_thumb == again.credentials.signature_thumb
    finally:
        again.close()


def test_an_authreq_rebuilt_after_a_renewal_keeps_the_certificate_its_pi_names(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The AuthReq stored in a gateway outage before the renewal is refused as too old
    once the gateway is back after it: built afresh (``renewal``), it is signed with the
    earlier key again, and approved."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-renew-rebuilt", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    old_thumb = merchant.credentials.signature_thumb
    again: Merchant | None = None
    try:
        wallet = make_wallet(merchant)
        outage.stop()
        record = buy(wallet, offer(merchant, 800))
        xid = bytes.fromhex(record.xid)
        pending = merchant.store.order(xid)
        assert pending.state is OrderState.AUTHORIZING
        directory = merchant.config.base_dir
        merchant.close()
        _renew(directory, capsys)
        clocks_moved(monkeypatch, WELL_PAST_MS)
        outage.serve(PaymentGatewayServicer(bank.bank))
        again = restart(directory)
        done = again.authorizer.authorize(xid)
        assert (done.state, done.error_code) == (OrderState.AUTHORIZED, 0)
        assert done.auth_rrpid != pending.auth_rrpid and done.signer_thumb == old_thumb
    finally:
        if again is not None:
            again.close()
        outage.release()


def _purchased_then_renewed(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
    merchant_id: str,
    gateway_target: str | None = None,
) -> tuple[Merchant, bytes, bytes]:
    """An order purchased, its AuthReq not built, then ``renew``: the merchant opened
    again without serving (no worker), the order's XID and the earlier certificate's
    thumbprint."""
    merchant = make_merchant(merchant_id, AnswerMode.ORDER_RECEIVED, gateway_target)
    merchant.authorizer.stop(timeout=10)
    old_thumb = merchant.credentials.signature_thumb
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 500)).xid)
    directory = merchant.config.base_dir
    merchant.close()
    _renew(directory, capsys)
    return Merchant.open(load_merchant_config(directory)), xid, old_thumb


def _forget_earlier_keys(merchant: Merchant) -> None:
    """Every signature key but the current one deleted from the merchant's backend."""
    earlier = [
        key
        for key in merchant.backend.list_keys()
        if key.label == SIGNATURE_LABEL and key != merchant.credentials.signature_key
    ]
    assert earlier
    for key in earlier:
        merchant.backend.delete(key.label, key.version)


def test_an_order_whose_signature_key_is_gone_is_not_sent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The earlier signature key deleted after the renewal: no AuthReq can be built that
    the gateway would take; the order fails, nothing sent, and the log says why by
    name."""
    again, xid, old_thumb = _purchased_then_renewed(
        make_merchant, make_wallet, capsys, "m-renew-gone"
    )
    try:
        _forget_earlier_keys(again)
        left = again.authorizer.authorize(xid)
        assert (left.state, left.error_code, left.auth_request) == (
            OrderState.FAILED, ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, None,
        )  # fmt: skip
        said = f"cannot be authorized: the signature key whose certificate {old_thumb.hex()[:16]}"
        assert any(said in m for m in caplog.messages)
    finally:
        again.close()


def test_an_order_whose_earlier_certificate_has_expired_is_not_sent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The order waited past the end of the certificate its PI names: the gateway would
    refuse any AuthReq signed under it, so none is built: the order fails, and the log
    says so."""
    again, xid, old_thumb = _purchased_then_renewed(
        make_merchant, make_wallet, capsys, "m-renew-expired"
    )
    try:
        ends = load_certificate(
            next(der for _, der in certified_versions(again.backend, SIGNATURE_LABEL)
                 if thumbprint(der) == old_thumb)
        ).not_valid_after_utc  # fmt: skip

        class _AfterItsEnd(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> _AfterItsEnd:
                return cls.fromtimestamp((ends + timedelta(seconds=1)).timestamp(), tz)

        # Not raising: the code before this check had no clock to move.
        monkeypatch.setattr(authorizer_module, "datetime", _AfterItsEnd, raising=False)
        left = again.authorizer.authorize(xid)
        assert (left.state, left.error_code, left.auth_request) == (
            OrderState.FAILED, ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, None,
        )  # fmt: skip
        said = f"the signature certificate {old_thumb.hex()[:16]} its PI names expired at"
        assert any(said in m for m in caplog.messages)
    finally:
        again.close()
