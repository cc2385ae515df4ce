"""A merchant that reads the PReq, has the card authorized, and answers all the same that
it was too busy to read it: a gRPC status, not signed, so not its word.

The wallet keeps the purchase (``SHED``), tells the cardholder the merchant said it was
too busy and may have read the request all the same, refuses to buy that order again
until an inquiry settles it (nothing sent), and the merchant's signed InqRes then shows
the authorization. Real bank, gateway and merchant; only the merchant's Purchase handler
is wrapped, to answer the shed status after doing its work. Then what an inquiry's signed
Errors settle, and what refuses a purchase of the same order, one by one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from cli.purchase_lines import record_line
from clients.errors import ShedUnsettled
from clients.merchant import servicer as servicer_module
from clients.merchant.records import OrderState
from clients.transport import RetryPolicy
from clients.wallet import purchases
from clients.wallet.merchant_answers import NOT_BOUGHT, SHED, unheld
from clients.wallet.purchases import REFUSED, SENT, PurchaseBook, PurchaseRecord
from setcore.errors import ErrorCode, PeerError
from setcore.purchase_answer import MerchantIdentity
from setpay.v1 import common_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import offer
from tests.clients.transport_support import shed_status
from tests.clients.wallet.test_purchase_book import RECORD

AMOUNT = 4321
# The shed PReq's retries, quick: every one is answered the same way here.
QUICK = RetryPolicy(attempts=3, first_backoff=0.01, max_backoff=0.02)
FAILED = 1
# The merchant's unsigned word that it shed the request: the outcome is unknown.
OUTCOME_UNKNOWN = 4


def test_a_purchase_read_and_authorized_then_answered_shed_is_kept_and_inquired(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = servicer_module.MerchantServicer.Purchase
    answered: list[str] = []

    def read_then_claim_shed(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        # Read, recorded and authorized (a repeat is answered from the order): the PRes
        # is dropped for the status a merchant sheds unread calls with.
        answered.append(type(real(self, request, context)).__name__)
        context.abort_with_status(shed_status(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.01))

    monkeypatch.setattr(servicer_module.MerchantServicer, "Purchase", read_then_claim_shed)
    monkeypatch.setattr(purchases, "PURCHASE_RETRIES", QUICK)
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    merchant = make_merchant("m-liar")
    wallet = make_wallet(merchant)
    book = PurchaseBook(wallet.config.purchases_file)
    wanted = offer(merchant, AMOUNT)
    argv = ["wallet", "--dir", str(wallet.config.base_dir)]
    buy_again = [
        *argv, "purchase", "--lid-m", wanted.lid_m.hex(), "--description",
        wanted.description.decode(), "--amount", str(AMOUNT),
    ]  # fmt: skip

    status, out, err = run_cli(buy_again, capsys)
    assert len(answered) == QUICK.attempts  # every attempt read, every one answered shed
    [kept] = book.all()
    (order,) = merchant.store.orders()
    assert order.xid.hex() == kept.xid
    assert order.state is OrderState.AUTHORIZED  # the card was authorized all the same
    # Not "nothing was bought": kept, and the cardholder told to ask before buying again.
    assert kept.completion == SHED
    assert (status, out) == (OUTCOME_UNKNOWN, "")
    assert "too busy to read the purchase request" in err and "may have read" in err
    assert "the card may be authorized" in err
    assert f"`setpay wallet inquire {kept.short_id}` before buying again" in err
    assert "nothing was bought" not in err

    # Buying the order again before asking: refused, no PReq sent, nothing recorded (by
    # this merchant at PInit, whose offer it took: a SHED purchase is refused once the
    # PInitRes names the merchant, ``test_shed_settlement``).
    status, out, err = run_cli(buy_again, capsys)
    assert (status, out) == (FAILED, "")
    assert "UNKNOWN_LID" in err
    assert book.all() == [kept]
    assert len(merchant.store.orders()) == 1 and len(answered) == QUICK.attempts

    # The merchant's signed InqRes shows the authorization, and the record takes it.
    status, out, err = run_cli([*argv, "inquire", kept.short_id], capsys)
    [settled] = book.all()
    assert (status, out, err) == (0, record_line(settled) + "\n", "")
    assert settled.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    assert (settled.auth_code, settled.auth_amount) == ("AUTH_CODE_APPROVED", AMOUNT)
    assert out.startswith(f"{kept.short_id}  AUTHORIZATION_PERFORMED  APPROVED  amount {AMOUNT}")


def _of_order(lid_m: bytes, xid: bytes, completion: str) -> PurchaseRecord:
    ids = common_pb2.TransIDs(xid=xid, lid_c=b"c", lid_m=lid_m).SerializeToString()
    return replace(
        RECORD, xid=xid.hex(), trans_ids=base64.b64encode(ids).decode(), completion=completion
    )


ORDER, OTHER_ORDER = b"order-1", b"order-2"
# RECORD's merchant: recorded by its certificate alone.
AT_RECORD = (MerchantIdentity("setpay", "m-1"), bytes.fromhex(RECORD.merchant_thumb))


def test_only_a_shed_purchase_of_the_same_order_refuses_another(tmp_path: Path) -> None:
    path = tmp_path / "purchases.json"
    book = PurchaseBook(path)
    settled = [
        _of_order(ORDER, b"\x01" * 32, SENT),
        _of_order(ORDER, b"\x02" * 32, REFUSED),
        _of_order(ORDER, b"\x03" * 32, NOT_BOUGHT),
        _of_order(ORDER, b"\x04" * 32, "COMPLETION_CODE_AUTHORIZATION_PERFORMED"),
        _of_order(OTHER_ORDER, b"\x05" * 32, SHED),
    ]
    path.write_text(json.dumps([asdict(r) for r in settled]))
    book.refuse_shed(ORDER, *AT_RECORD)  # no SHED purchase of this order: nothing refused
    book.add(_of_order(ORDER, b"\x06" * 32, SHED))
    written = path.read_bytes()
    with pytest.raises(ShedUnsettled) as refused:
        book.refuse_shed(ORDER, *AT_RECORD)
    assert refused.value.short_id == "06060606"
    told = str(refused.value)
    assert "inquire 06060606" in told and "no purchase request sent" in told
    assert path.read_bytes() == written  # a refusal changes nothing


UNKNOWN_XID = PeerError(ErrorCode.ERROR_CODE_UNKNOWN_XID, "no purchase for this XID yet")
# Stands for the signed Error's bytes (``unheld`` keeps them as they came).
SIGNED = b"the merchant's signed error"


@pytest.mark.parametrize("completion", [SHED, NOT_BOUGHT])
def test_a_signed_unknown_xid_settles_a_shed_purchase_as_not_bought(completion: str) -> None:
    assert unheld(completion, UNKNOWN_XID, SIGNED) == {
        "completion": NOT_BOUGHT,
        "refusal": "ERROR_CODE_UNKNOWN_XID",
        "signed_error": base64.b64encode(SIGNED).decode(),
    }


@pytest.mark.parametrize(
    ("completion", "error"),
    [
        # A PReq that left unanswered may be read yet: UNKNOWN_XID settles nothing.
        (SENT, UNKNOWN_XID),
        (REFUSED, UNKNOWN_XID),
        ("COMPLETION_CODE_AUTHORIZATION_PERFORMED", UNKNOWN_XID),
        # Of a SHED one, only UNKNOWN_XID says the merchant holds nothing.
        (SHED, PeerError(ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE, "failed")),
        (SHED, PeerError(ErrorCode.ERROR_CODE_UNKNOWN_LID, "no such order")),
        (SHED, PeerError(99, "a code of a later release")),
    ],
    ids=["sent", "refused", "authorized", "shed-failure", "shed-unknown-lid", "shed-later"],
)
def test_any_other_signed_error_settles_nothing(completion: str, error: PeerError) -> None:
    assert unheld(completion, error, SIGNED) is None


def test_an_unknown_xid_without_the_signed_bytes_settles_nothing() -> None:
    # Nothing to keep of the merchant's statement: no NOT_BOUGHT resting on nothing.
    assert unheld(SHED, UNKNOWN_XID, b"") is None


def test_a_shed_purchase_the_merchant_disowns_under_its_signature_reads_not_bought() -> None:
    record = _of_order(ORDER, b"\x07" * 32, SHED)
    line = record_line(record)
    assert line.startswith("07070707  SHED  amount ")
    assert "may have read all the same" in line and "inquire 07070707" in line
    fields = unheld(SHED, UNKNOWN_XID, SIGNED)
    assert fields is not None
    gone = replace(record, **fields)  # type: ignore[arg-type]
    assert record_line(gone).startswith("07070707  NOT_BOUGHT  UNKNOWN_XID  amount ")
    assert not record.answered and gone.answered
