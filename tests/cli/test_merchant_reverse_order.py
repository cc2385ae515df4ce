"""``setpay merchant reverse ORDER --capture OP`` (or ``--credit OP``): OP is looked up among
the operations of its kind of ORDER alone. The command used to match OP against every
operation of any kind and order, ignoring ORDER: naming order A with order B's capture id
reversed B's capture, exit 0."""

from __future__ import annotations

import os

import pytest

import setcore.cap_rev_or_cred
import setcore.capture
from clients.merchant.checkout import settled_amounts
from clients.merchant.records import Operation
from clients.merchant.records import OperationKind as Kind
from clients.merchant.runtime import Merchant
from setcore.freshness import new_id
from tests.clients import conftest as clients_conftest
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.tampering_support import TamperingGateway, gateway_hold
from tests.clients.test_purchase_flow import buy, offer

# The client tests' bank, merchants and wallets.
bank = clients_conftest.bank
make_merchant = clients_conftest.make_merchant
make_wallet = clients_conftest.make_wallet


def _attempt(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str, str]:
    """The exit status, stdout and stderr, whether argparse or the command ends it."""
    try:
        return run_cli(argv, capsys)
    except SystemExit as exited:
        out, err = capsys.readouterr()
        return exited.code, out, err


def _base(merchant: Merchant) -> list[str]:
    return ["merchant", "--dir", str(merchant.config.base_dir)]


def _only(merchant: Merchant, xid: str, kind: Kind) -> Operation:
    (operation,) = [o for o in merchant.store.operations(bytes.fromhex(xid)) if o.kind is kind]
    return operation


def _sent(gateway: TamperingGateway) -> set[str]:
    """The methods called since ``gateway`` began recording, but the revocation data's
    fetch every settlement command makes as it opens the merchant."""
    return {name for name, calls in gateway.exchanges.items() if calls} - {"GetBrandCRLIdentifier"}


def _starting_as(monkeypatch: pytest.MonkeyPatch, module: object, start: bytes) -> None:
    """The next request ids ``module`` makes start with ``start`` (random past it)."""
    monkeypatch.setattr(module, "new_id", lambda: start + os.urandom(32 - len(start)))


@pytest.mark.parametrize("flag", ["--capture", "--credit"])
def test_another_orders_operation_is_refused_naming_its_order(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: str,
) -> None:
    """The operator names order A and pastes B's capture (or refund) id: nothing is
    signed, stored or sent, and the error says which order that id is of."""
    merchant = make_merchant(f"m-cli-reverse-other{flag}")
    wallet = make_wallet(merchant)
    a, b = buy(wallet, offer(merchant, 1_000)), buy(wallet, offer(merchant, 2_000))
    for order in (a, b):
        assert run_cli([*_base(merchant), "capture", order.xid[:12]], capsys)[0] == 0
    kind = Kind.CAPTURE if flag == "--capture" else Kind.CREDIT
    refunded = 500 if kind is Kind.CREDIT else 0  # a refund of B's, for --credit to name
    if refunded:
        argv = [*_base(merchant), "refund", b.xid[:12], "--amount", str(refunded)]
        assert run_cli(argv, capsys)[0] == 0
    b_op = _only(merchant, b.xid, kind)
    stored = merchant.store.operations()
    settled = settled_amounts(merchant.store, bytes.fromhex(b.xid))
    hold = gateway_hold(bank, bytes.fromhex(b.xid))
    gateway = TamperingGateway(monkeypatch, bank)  # records every request sent

    status, out, err = _attempt(
        [*_base(merchant), "reverse", a.xid[:12], flag, b_op.rrpid.hex()[:8]], capsys
    )

    assert status == 1, out + err
    assert f"is of order {b.xid[:8]}, not of order {a.xid[:8]}: nothing reversed" in err
    assert merchant.store.operations() == stored
    assert settled_amounts(merchant.store, bytes.fromhex(b.xid)) == settled == (2_000, refunded)
    assert not _sent(gateway)
    assert gateway_hold(bank, bytes.fromhex(b.xid)) == hold


@pytest.mark.parametrize("order", ["", "0" * 12], ids=["empty", "unknown"])
def test_an_order_empty_or_unknown_reverses_nothing(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    order: str,
) -> None:
    """An empty ORDER (an unset shell variable) is a usage error, one that names no order
    the merchant's refusal: never "any order"."""
    merchant = make_merchant(f"m-cli-reverse-order-{len(order)}")
    record = buy(make_wallet(merchant), offer(merchant, 1_000))
    assert run_cli([*_base(merchant), "capture", record.xid[:12]], capsys)[0] == 0
    capture = _only(merchant, record.xid, Kind.CAPTURE)
    stored = merchant.store.operations()
    gateway = TamperingGateway(monkeypatch, bank)

    argv = [*_base(merchant), "reverse", order, "--capture", capture.rrpid.hex()[:8]]
    status, out, err = _attempt(argv, capsys)

    if order:
        assert status == 1 and "no order with this id" in err, out + err
    else:
        assert status == 2 and "ORDER is empty" in err, out + err
    assert merchant.store.operations() == stored
    assert not _sent(gateway)


def test_an_id_shared_by_two_orders_captures_names_the_one_of_order(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given ORDER, a start two orders' captures share names that order's one; without
    ORDER it is ambiguous, refused with nothing sent."""
    merchant = make_merchant("m-cli-reverse-shared")
    wallet = make_wallet(merchant)
    a, b = buy(wallet, offer(merchant, 1_000)), buy(wallet, offer(merchant, 2_000))
    _starting_as(monkeypatch, setcore.capture, b"\xab\xcd")
    for order in (a, b):
        assert run_cli([*_base(merchant), "capture", order.xid[:12]], capsys)[0] == 0
    stored = merchant.store.operations()
    gateway = TamperingGateway(monkeypatch, bank)

    status, _, err = _attempt([*_base(merchant), "reverse", "--capture", "abcd"], capsys)
    assert status == 1 and "ambiguous" in err
    assert merchant.store.operations() == stored and not _sent(gateway)

    status, out, err = _attempt(
        [*_base(merchant), "reverse", b.xid[:12], "--capture", "abcd"], capsys
    )
    assert (status, err) == (0, "")
    assert "capture-reversal" in out and "succeeded, 2000" in out
    assert settled_amounts(merchant.store, bytes.fromhex(b.xid)) == (0, 0)
    assert settled_amounts(merchant.store, bytes.fromhex(a.xid)) == (1_000, 0)


def test_two_captures_of_the_order_sharing_the_id_given_are_ambiguous(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    merchant = make_merchant("m-cli-reverse-twice")
    record = buy(make_wallet(merchant), offer(merchant, 2_000))
    _starting_as(monkeypatch, setcore.capture, b"\x12\x34")
    for _ in range(2):
        argv = [*_base(merchant), "capture", record.xid[:12], "--amount", "1000"]
        assert run_cli(argv, capsys)[0] == 0
    stored = merchant.store.operations()
    gateway = TamperingGateway(monkeypatch, bank)

    argv = [*_base(merchant), "reverse", record.xid[:12], "--capture", "1234"]
    status, _, err = _attempt(argv, capsys)

    assert status == 1 and "ambiguous" in err
    assert merchant.store.operations() == stored and not _sent(gateway)


def test_a_refund_whose_id_starts_as_a_captures_is_named_by_its_kind(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--credit`` looks among refunds and ``--capture`` among captures: a start both
    share names one refund for ``--credit`` (it was "ambiguous operation id"), and a
    refund's whole id names no capture."""
    merchant = make_merchant("m-cli-reverse-kinds")
    record = buy(make_wallet(merchant), offer(merchant, 2_000))
    _starting_as(monkeypatch, setcore.capture, b"\x5a\x5a")
    _starting_as(monkeypatch, setcore.cap_rev_or_cred, b"\x5a\x5a")
    base = _base(merchant)
    assert run_cli([*base, "capture", record.xid[:12]], capsys)[0] == 0
    assert run_cli([*base, "refund", record.xid[:12], "--amount", "700"], capsys)[0] == 0
    credit = _only(merchant, record.xid, Kind.CREDIT)
    monkeypatch.setattr(setcore.cap_rev_or_cred, "new_id", new_id)  # the reversal's: random

    status, out, err = _attempt([*base, "reverse", record.xid[:12], "--credit", "5a5a"], capsys)
    assert (status, err) == (0, "")
    assert "credit-reversal" in out and "succeeded, 700" in out
    assert settled_amounts(merchant.store, bytes.fromhex(record.xid)) == (2_000, 0)

    stored = merchant.store.operations()
    status, _, err = _attempt([*base, "reverse", "--capture", credit.rrpid.hex()], capsys)
    assert status == 1 and "no capture has this id" in err
    status, _, err = _attempt(
        [*base, "reverse", record.xid[:12], "--capture", credit.rrpid.hex()], capsys
    )
    assert status == 1 and f"order {record.xid[:8]} has no capture with this id" in err
    assert merchant.store.operations() == stored


def test_one_digit_names_the_orders_only_capture(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ORDER takes any start that names one order, OP takes any that names one of its
    operations: no more digits are asked for than tell them apart."""
    merchant = make_merchant("m-cli-reverse-digit")
    record = buy(make_wallet(merchant), offer(merchant, 1_500))
    assert run_cli([*_base(merchant), "capture", record.xid[:12]], capsys)[0] == 0
    capture = _only(merchant, record.xid, Kind.CAPTURE)
    argv = [*_base(merchant), "reverse", record.xid[:12], "--capture", capture.rrpid.hex()[0]]
    status, out, err = _attempt(argv, capsys)
    assert (status, err) == (0, "")
    assert "capture-reversal" in out and f"for order {record.xid[:8]}" in out
    assert settled_amounts(merchant.store, bytes.fromhex(record.xid)) == (0, 0)
