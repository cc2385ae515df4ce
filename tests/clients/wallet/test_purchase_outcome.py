"""``setpay wallet purchase``: once the PReq has left, no verified answer is not a refusal.

A lost PRes, or one whose checks fail, leaves the card possibly authorized: the command
exits 4 and says to run ``inquire``, which then reports what the merchant did. A refusal
(the merchant's signed Error on the PReq) still exits 1, and is recorded as
refused, with its code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cli.wallet import record_line
from clients.errors import OrderStateError
from clients.merchant import checkout
from clients.merchant.order_store import OrderStore
from clients.merchant.runtime import Merchant
from clients.wallet import purchases
from clients.wallet.purchases import REFUSED, SENT, PurchaseBook
from clients.wallet.runtime import Wallet
from setpay.v1 import crypto_pb2, error_pb2, purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory
from tests.clients.test_purchase_flow import offer
from tests.clients.wallet.relay import OnPurchase, merchant_relay

OUTCOME_UNKNOWN = 4


def _pass_on(answer: bytes, context: grpc.ServicerContext) -> bytes:
    """The merchant's answer, as it came."""
    return answer


def _as_it_came(answer: bytes, context: grpc.ServicerContext) -> bytes:
    """The merchant's answer, untouched (another merchant ID than ``_pass_on``'s: the
    fixture names each test's merchant after its function, and an ID is registered once)."""
    return answer


def _lose(answer: bytes, context: grpc.ServicerContext) -> bytes:
    """The merchant answered; the answer never reaches the wallet."""
    context.abort(grpc.StatusCode.INTERNAL, "the connection broke on the way back")


def _unsigned_error(answer: bytes, context: grpc.ServicerContext) -> bytes:
    """The merchant's PRes replaced by an Error nobody signed: not the merchant's word."""
    header = purchase_pb2.PurchaseResponse.FromString(answer).header
    error = error_pb2.SetError(unsigned_error=error_pb2.ErrorTBS(error_msg="declined"))
    return purchase_pb2.PurchaseResponse(header=header, error=error).SerializeToString()


def _bad_signature(answer: bytes, context: grpc.ServicerContext) -> bytes:
    """The merchant's PRes with one bit of its signature flipped."""
    response = purchase_pb2.PurchaseResponse.FromString(answer)
    signed = crypto_pb2.Signed.FromString(response.p_res)
    value = bytearray(signed.signatures[0].value)
    value[len(value) // 2] ^= 1
    signed.signatures[0].value = bytes(value)
    response.p_res = signed.SerializeToString()
    return response.SerializeToString()


class Shop:
    """A serving merchant and a registered wallet that reaches it through the relay."""

    def __init__(self, merchant: Merchant, wallet: Wallet) -> None:
        self.merchant = merchant
        self.wallet = wallet
        self.argv = ["wallet", "--dir", str(wallet.config.base_dir)]

    def purchase(self, amount: int, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        initiation = offer(self.merchant, amount)
        return run_cli(
            [*self.argv, "purchase", "--lid-m", initiation.lid_m.hex(),
             "--description", initiation.description.decode(), "--amount", str(amount)],
            capsys,
        )  # fmt: skip


@pytest.fixture
def shop_through(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Shop]:
    """The relay does ``request.param`` to the merchant's PRes."""
    on_purchase: OnPurchase = request.param
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    merchant = make_merchant(f"m-{on_purchase.__name__.strip('_').replace('_', '-')}")
    with merchant_relay(bank, merchant.port, on_purchase) as port:
        wallet = new_wallet(bank, tmp_path / "wallet", f"127.0.0.1:{port}")
        try:
            yield Shop(merchant, wallet)
        finally:
            wallet.close()


@pytest.mark.parametrize(
    ("shop_through", "says"),
    [
        (_lose, "no answer: merchant Purchase: INTERNAL"),
        (_unsigned_error, "the answer did not verify: ERROR_CODE_SIGNATURE_REQUIRED"),
        (_bad_signature, "the answer did not verify: ERROR_CODE_SIGNATURE_FAILURE"),
    ],
    indirect=["shop_through"],
    ids=["lost", "unsigned-error", "bad-signature"],
)
def test_no_verified_answer_exits_4_and_inquire_tells(
    shop_through: Shop, capsys: pytest.CaptureFixture[str], says: str
) -> None:
    shop = shop_through
    status, out, err = shop.purchase(1300, capsys)
    (sent,) = PurchaseBook(shop.wallet.config.purchases_file).all()
    assert (status, out) == (OUTCOME_UNKNOWN, "")
    assert sent.completion == SENT
    assert err.startswith(f"setpay wallet: purchase {sent.short_id} sent, outcome unknown")
    assert says in err and "the card may be authorized" in err
    assert err.rstrip().endswith(f"`setpay wallet inquire {sent.short_id}`")

    # The merchant did authorize it: inquire (through the same relay) says so.
    status, out, err = run_cli([*shop.argv, "inquire", sent.short_id], capsys)
    assert (status, err) == (0, "")
    assert "AUTHORIZATION_PERFORMED" in out and "APPROVED" in out


@pytest.mark.parametrize("shop_through", [_pass_on], indirect=True)
def test_a_refusal_still_exits_1(shop_through: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    """The wallet pays another amount than the order's: the merchant's signed Error."""
    shop = shop_through
    initiation = offer(shop.merchant, 1000)
    status, out, err = run_cli(
        [*shop.argv, "purchase", "--lid-m", initiation.lid_m.hex(),
         "--description", initiation.description.decode(), "--amount", "999"],
        capsys,
    )  # fmt: skip
    assert (status, out) == (1, "")
    # Recorded as refused, with the merchant's code, not SENT for ever: nothing was bought.
    (refused,) = PurchaseBook(shop.wallet.config.purchases_file).all()
    assert (refused.completion, refused.refusal) == (REFUSED, "ERROR_CODE_DIGEST_MISMATCH")
    assert refused.answered
    assert record_line(refused) == (
        f"{refused.short_id}  REFUSED  DIGEST_MISMATCH  amount 999 (978): the merchant "
        "refused the purchase request"
    )
    # The merchant's own text, quoted: a peer's words never end the line or run on.
    assert err == (
        "setpay wallet: peer refused the request: ERROR_CODE_DIGEST_MISMATCH 'digest mismatch'"
        ": the merchant's order is not the one given (its description, amount or currency "
        "differ; --currency was not given: 978 (EUR) was assumed); buy it with the "
        "merchant's initiation file (--initiation)\n"
    )


@pytest.mark.parametrize("shop_through", [_as_it_came], indirect=True)
def test_the_merchants_answer_that_a_copy_got_there_first_exits_4(
    shop_through: Shop, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gRPC resends a PReq after UNAVAILABLE; a copy that reaches the merchant while the
    first is being decided gets its signed PI_PREVIOUSLY_USED, about our own fresh XID.
    That is no refusal: the first copy may be authorizing the card. Here the merchant's
    store says the copy came second, as it does in that race."""

    def second(*args: object, **kwargs: object) -> object:
        raise OrderStateError("this XID is already paid")

    monkeypatch.setattr(OrderStore, "record_purchase", second)
    status, out, err = shop_through.purchase(1300, capsys)
    (sent,) = PurchaseBook(shop_through.wallet.config.purchases_file).all()
    assert (status, out) == (OUTCOME_UNKNOWN, ""), err
    assert sent.completion == SENT
    assert "already holds this purchase" in err and "the card may be authorized" in err


def _unchanged(answer: bytes, context: grpc.ServicerContext) -> bytes:
    """The merchant's answer, untouched (a merchant ID of its own, as ``_as_it_came``)."""
    return answer


def _verbatim(answer: bytes, context: grpc.ServicerContext) -> bytes:
    """The merchant's answer, untouched (a merchant ID of its own, as ``_as_it_came``)."""
    return answer


@pytest.mark.parametrize("shop_through", [_unchanged], indirect=True)
def test_the_merchants_unspecified_failure_after_authorizing_exits_4(
    shop_through: Shop, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merchant turns any failure of its own into a signed UNSPECIFIED_FAILURE, here one
    met after it recorded the purchase and the gateway approved it: no refusal."""

    def broken(code: int) -> None:
        raise RuntimeError("a fault after the authorization")

    working = checkout.metrics.purchase_answered
    monkeypatch.setattr(checkout.metrics, "purchase_answered", broken)
    status, out, err = shop_through.purchase(1300, capsys)
    (sent,) = PurchaseBook(shop_through.wallet.config.purchases_file).all()
    assert (status, out) == (OUTCOME_UNKNOWN, ""), err
    assert (sent.completion, sent.refusal) == (SENT, "")
    assert "UNSPECIFIED_FAILURE" in err and "the card may be authorized" in err

    # Not ``undo``: the fixture's passphrase variable is set on the same monkeypatch.
    monkeypatch.setattr(checkout.metrics, "purchase_answered", working)
    status, out, err = run_cli([*shop_through.argv, "inquire", sent.short_id], capsys)
    assert (status, err) == (0, "")
    assert "AUTHORIZATION_PERFORMED" in out and "APPROVED" in out


@pytest.mark.parametrize("shop_through", [_verbatim], indirect=True)
def test_a_foreign_exception_opening_the_answer_exits_4(
    shop_through: Shop, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error outside setpay's classes once the PReq has left (a ValueError from a
    parser, cryptography's UnsupportedAlgorithm) is no refusal either."""

    def unreadable(*args: object) -> None:
        raise ValueError("error parsing asn1 value")

    monkeypatch.setattr(purchases, "open_purchase_response", unreadable)
    status, out, err = shop_through.purchase(1300, capsys)
    (sent,) = PurchaseBook(shop_through.wallet.config.purchases_file).all()
    assert (status, out) == (OUTCOME_UNKNOWN, ""), err
    assert sent.completion == SENT
    assert "error parsing asn1 value" in err and "the card may be authorized" in err
