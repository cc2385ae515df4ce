"""A gateway or merchant of a later release answers a purchase with codes this build does
not know.

An AuthCode of a later release declines: the merchant records the order declined, and
the wallet records the code by its bounded name. A CompletionCode of a later release may
say the order went through as well as not: the wallet tells the cardholder neither
"paid" nor "refused" but that the outcome is unknown (exit 4), and keeps the purchase
SENT, to be asked about again. So does a signed Error of a code it does not know.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

import gateway.authorize
from cli.merchant import order_line
from cli.wallet import record_line
from clients.errors import PurchaseOutcomeUnknown
from clients.merchant import answers, checkout
from clients.merchant.records import Order, OrderState
from clients.wallet.merchant_answers import UnknownCompletion
from clients.wallet.purchases import SENT, Initiation, PurchaseBook, outcome_fields
from setcore.errors import PeerError
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import EUR, WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

# A value no result-code enum of this build defines: a later release's code.
LATER = 99
OUTCOME_UNKNOWN = 4


def test_an_auth_code_of_a_later_release_is_a_decline(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-later-auth")
    wallet = make_wallet(merchant)
    real = gateway.authorize.build_auth_response

    def later(credentials: Any, verified: Any, decision: Any) -> bytes:
        return real(credentials, verified, dataclasses.replace(decision, auth_code=LATER))

    monkeypatch.setattr(gateway.authorize, "build_auth_response", later)
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    record = buy(wallet, offer(merchant, 1200))
    assert record.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    assert record.auth_code == "AuthCode 99"
    assert "  AuthCode 99  amount 1200 (978)" in record_line(record)
    order = merchant.store.order(bytes.fromhex(record.xid))
    assert order.state is OrderState.DECLINED
    assert order.authorization is not None and order.authorization.auth_code == LATER
    assert f"order {order.short_id}: AuthCode 99" in caplog.text
    assert "  AuthCode 99" in order_line(order, merchant.store)


def test_a_completion_code_of_a_later_release_leaves_the_outcome_unknown(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    merchant = make_merchant("m-later-completion")
    wallet = make_wallet(merchant)
    real = checkout.completion_of

    def later(order: Order, captured: int, credited: int) -> purchase_pb2.PResPayload:
        payload = real(order, captured, credited)
        payload.completion_code = LATER  # type: ignore[assignment]
        return payload

    monkeypatch.setattr(checkout, "completion_of", later)
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    initiation = offer(merchant, 1300)
    argv = ["wallet", "--dir", str(wallet.config.base_dir)]
    status, out, err = run_cli(
        [*argv, "purchase", "--lid-m", initiation.lid_m.hex(),
         "--description", initiation.description.decode(), "--amount", "1300"],
        capsys,
    )  # fmt: skip
    (sent,) = PurchaseBook(wallet.config.purchases_file).all()
    assert (status, out) == (OUTCOME_UNKNOWN, "")
    assert sent.completion == SENT  # neither paid nor refused: nothing to buy again
    assert err.startswith(f"setpay wallet: purchase {sent.short_id} sent, outcome unknown")
    assert "the merchant reports CompletionCode 99" in err

    # An inquiry answered the same way changes nothing either.
    status, out, err = run_cli([*argv, "inquire", sent.short_id], capsys)
    assert (status, out) == (OUTCOME_UNKNOWN, "")
    assert "CompletionCode 99" in err
    (still,) = PurchaseBook(wallet.config.purchases_file).all()
    assert still == sent


def test_a_payload_of_a_later_completion_code_is_no_record() -> None:
    data = purchase_pb2.PResData()
    data.payloads.add(completion_code=LATER, auth_code=LATER)
    with pytest.raises(UnknownCompletion, match="CompletionCode 99"):
        outcome_fields(data)
    data.payloads[0].completion_code = purchase_pb2.COMPLETION_CODE_ORDER_REJECTED
    fields = outcome_fields(data)
    assert (fields["completion"], fields["auth_code"]) == (
        "COMPLETION_CODE_ORDER_REJECTED",
        "AuthCode 99",
    )


def test_a_signed_error_of_a_later_code_leaves_the_outcome_unknown(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-later-preq-error")
    wallet = make_wallet(merchant)
    real = answers.build_error

    def later(credentials: Any, code: int, **kwargs: Any) -> Any:
        return real(credentials, LATER, **kwargs)

    monkeypatch.setattr(answers, "build_error", later)
    agreed = offer(merchant, 1000)
    # Another amount than the order's: the merchant refuses the PReq with a signed Error.
    other = Initiation(agreed.lid_m, agreed.description, EUR, 999)
    with pytest.raises(PurchaseOutcomeUnknown) as unknown:
        buy(wallet, other)
    assert isinstance(unknown.value.cause, PeerError)
    assert "refused with ErrorCode 99, a code of a later release" in str(unknown.value)
    (sent,) = PurchaseBook(wallet.config.purchases_file).all()
    assert sent.completion == SENT
