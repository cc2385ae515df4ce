"""A merchant of a later release answers a purchase with codes this build does not know.

A CompletionCode of a later release may say the order went through as well as not, and
so may an AuthCode (a later gateway's approval variant, relayed by the merchant): the
wallet tells the cardholder neither "paid" nor "declined" but that the outcome is unknown
(exit 4), naming the code, and keeps the purchase as it was (SENT), to be asked about
again; an answer it reads then records normally. So does a signed Error of a code it
does not know. Every known AuthCode but APPROVED stays a decline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cli.wallet import record_line
from clients.errors import PurchaseOutcomeUnknown
from clients.merchant import answers, checkout
from clients.merchant.records import Order
from clients.wallet.merchant_answers import UnreadablePurchaseAnswer, outcome_fields
from clients.wallet.purchases import SENT, Initiation, PurchaseBook
from setcore.error_message import build_error
from setcore.errors import PeerError
from setpay.v1 import authorization_pb2, purchase_pb2
from tests.clients.bank_support import EUR, WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

# A value no result-code enum of this build defines: a later release's code.
LATER = 99
OUTCOME_UNKNOWN = 4
PERFORMED = purchase_pb2.COMPLETION_CODE_AUTHORIZATION_PERFORMED
PayloadOf = Callable[[Order, int, int], purchase_pb2.PResPayload]


def _later(field: str, real: PayloadOf) -> PayloadOf:
    """The merchant's PRes and InqRes payload, but for ``field``, a later release's code."""

    def payload_of(order: Order, captured: int, credited: int) -> purchase_pb2.PResPayload:
        payload = real(order, captured, credited)
        setattr(payload, field, LATER)
        return payload

    return payload_of


# The PRes and InqRes payload fields the wallet must read, and what it calls a later
# release's value of each.
@pytest.mark.parametrize(
    ("field", "named"),
    [("completion_code", "CompletionCode 99"), ("auth_code", "AuthCode 99")],
    ids=["completion", "auth"],
)
def test_a_later_code_leaves_the_outcome_unknown_until_an_answer_reads(
    field: str,
    named: str,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    merchant = make_merchant(f"m-later-{field.replace('_', '-')}")
    wallet = make_wallet(merchant)
    book = PurchaseBook(wallet.config.purchases_file)
    real = checkout.completion_of
    monkeypatch.setattr(checkout, "completion_of", _later(field, real))
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    initiation = offer(merchant, 1300)
    argv = ["wallet", "--dir", str(wallet.config.base_dir)]
    status, out, err = run_cli(
        [*argv, "purchase", "--lid-m", initiation.lid_m.hex(),
         "--description", initiation.description.decode(), "--amount", "1300"],
        capsys,
    )  # fmt: skip
    (sent,) = book.all()
    assert (status, out) == (OUTCOME_UNKNOWN, "")
    assert sent.completion == SENT  # neither paid nor declined: nothing to buy again
    assert err.startswith(f"setpay wallet: purchase {sent.short_id} sent, outcome unknown")
    assert f"the merchant reports {named}, " in err
    assert f"`setpay wallet inquire {sent.short_id}`" in err

    # An inquiry answered the same way changes nothing either.
    status, out, err = run_cli([*argv, "inquire", sent.short_id], capsys)
    assert (status, out) == (OUTCOME_UNKNOWN, "")
    assert named in err
    assert book.all() == [sent]

    # The merchant's answer in codes this wallet reads: recorded as any answer is.
    monkeypatch.setattr(checkout, "completion_of", real)
    status, out, err = run_cli([*argv, "inquire", sent.short_id], capsys)
    (answered,) = book.all()
    assert (status, out, err) == (0, record_line(answered) + "\n", "")
    assert answered.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    assert (answered.auth_code, answered.auth_amount) == ("AUTH_CODE_APPROVED", 1300)

    # A later code again leaves that answer standing, not replaced by a guess.
    monkeypatch.setattr(checkout, "completion_of", _later(field, real))
    status, out, err = run_cli([*argv, "inquire", sent.short_id], capsys)
    assert (status, out) == (OUTCOME_UNKNOWN, "")
    assert named in err
    assert book.all() == [answered]


def _payload(completion: int, auth_code: int) -> purchase_pb2.PResData:
    data = purchase_pb2.PResData()
    data.payloads.add(completion_code=completion, auth_code=auth_code)
    return data


@pytest.mark.parametrize(
    ("completion", "auth_code", "named"),
    [
        (LATER, authorization_pb2.AUTH_CODE_APPROVED, "CompletionCode 99, a completion code"),
        (PERFORMED, LATER, "AuthCode 99, an authorization code"),
        (purchase_pb2.COMPLETION_CODE_ORDER_REJECTED, LATER, "AuthCode 99, an authorization"),
        (LATER, LATER, "CompletionCode 99, a completion code"),  # the first read is named
    ],
    ids=["completion", "auth", "auth-of-a-rejected-order", "both"],
)
def test_a_payload_of_a_later_code_is_no_record(
    completion: int, auth_code: int, named: str
) -> None:
    with pytest.raises(UnreadablePurchaseAnswer, match=named):
        outcome_fields(_payload(completion, auth_code))


def test_every_known_auth_code_is_recorded_by_its_name() -> None:
    # Every known code but APPROVED is the merchant's decline, recorded as such.
    for name, value in authorization_pb2.AuthCode.items():
        fields = outcome_fields(_payload(PERFORMED, value))
        assert (fields["completion"], fields["auth_code"]) == (
            "COMPLETION_CODE_AUTHORIZATION_PERFORMED",
            name,
        )


def test_a_signed_error_of_a_later_code_leaves_the_outcome_unknown(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-later-preq-error")
    wallet = make_wallet(merchant)
    real = build_error  # what ``answers`` sends its errors with

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
