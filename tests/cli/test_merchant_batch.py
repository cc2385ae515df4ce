"""``setpay merchant batch``: which operations need a batch id, and what a refusal or an
unknown outcome exits with."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli.merchant_batch import EXIT_DIFFERS, run_batch
from clients.merchant.config import write_config
from clients.merchant.records import OperationState
from clients.peers import PeerConfig
from setpay.v1 import gateway_admin_pb2
from tests.clients import conftest as clients_conftest
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.tampering_support import (
    EVERY_TAMPERING,
    TamperingGateway,
    gateway_batches,
)

# The client tests' bank and merchants, for the tests here that need a gateway.
bank = clients_conftest.bank
make_merchant = clients_conftest.make_merchant


@pytest.mark.parametrize("operation", ["close", "purge", "query"])
def test_a_batch_operation_on_one_batch_requires_its_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], operation: str
) -> None:
    """Refused by the command line itself, naming the option: nothing reaches the gateway
    (there is none here)."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:1", directory / "tls/root.pem")
    write_config(directory, merchant_id="shop", name="Shop", gateway=peer, ca=peer)
    with pytest.raises(SystemExit) as exited:
        run_cli(["merchant", "--dir", str(directory), "batch", operation], capsys)
    assert exited.value.code == 2
    assert "--batch" in capsys.readouterr().err


def test_a_batch_operation_the_gateway_refuses_exits_1(
    make_merchant: MerchantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    merchant = make_merchant("m-cli-batch")
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    status, out, err = run_cli([*base, "close", "--batch", "nope"], capsys)
    assert status == 1 and "BATCH_UNKNOWN" in out + err
    status, out, _ = run_cli([*base, "open"], capsys)
    assert status == 0 and "SUCCESS" in out
    assert "; net 0" in out  # an empty batch: every figure, and its net, says nothing owed


def test_opening_a_batch_takes_no_id_of_the_merchants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway names the batches it opens (and refuses an OPEN naming one)."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:1", directory / "tls/root.pem")
    write_config(directory, merchant_id="shop", name="Shop", gateway=peer, ca=peer)
    with pytest.raises(SystemExit) as exited:
        run_cli(["merchant", "--dir", str(directory), "batch", "open", "--batch", "b1"], capsys)
    assert exited.value.code == 2
    assert "--batch" in capsys.readouterr().err


def test_a_batch_close_whose_answer_does_not_verify_exits_4_and_finishes_when_run_again(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The gateway closed the batch; the command says the outcome is unknown (exit 4, not
    1: nothing was refused), and given again it sends the same close and prints the
    gateway's answer to it, not BATCH_CLOSED."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-cli-batch-unknown")
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    status, out, _ = run_cli([*base, "open"], capsys)
    assert status == 0
    batch = out.split()[1].rstrip(":")
    gateway.tamper("BatchAdmin", EVERY_TAMPERING[0])
    status, out, err = run_cli([*base, "close", "--batch", batch], capsys)
    assert (status, out) == (4, "")
    (sent,) = merchant.store.batch_requests(OperationState.SENT)
    assert err.startswith(f"setpay merchant: batch close {sent.rrpid.hex()[:8]} of batch {batch}")
    assert "outcome unknown, will retry" in err
    assert gateway_batches(bank, merchant.config.merchant_id)[batch] == "closed"
    status, out, err = run_cli([*base, "close", "--batch", batch], capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"batch {batch}: SUCCESS closed;")
    assert gateway.sent("BatchAdmin")[-2:] == [sent.request] * 2


@pytest.mark.parametrize("operation", ["close", "query"])
def test_close_and_query_name_their_exit_statuses_in_their_help(
    capsys: pytest.CaptureFixture[str], operation: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(["merchant", "batch", operation, "--help"], capsys)
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
    assert "exit status: 0 the batch agrees" in shown
    assert "5 the totals differ" in shown and "2 a usage error" in shown


class _NoTotals:
    """A merchant whose gateway answers a query without its BatchStatus (a unit test of
    the command's output: the gateway would never, but the answer allows it)."""

    class batches:  # noqa: N801 - stands in for Merchant.batches
        @staticmethod
        def administer(*_: object, **__: object) -> gateway_admin_pb2.BatchAdminResData:
            return gateway_admin_pb2.BatchAdminResData(
                batch_id="b-7", status=gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS
            )


def test_a_query_answered_without_totals_says_not_reconciled_before_any_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(operation="query", batch="b-7", details=None, start=None)
    assert run_batch(_NoTotals(), args) == EXIT_DIFFERS  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "batch b-7: SUCCESS: the gateway sent no totals; not reconciled"
    assert "captured" not in out  # no zeros as if they were the batch's totals
