"""``setpay merchant batch {close,purge,query} --batch ID``: an id the gateway can take, 1 to
MAX_BATCH_ID_CHARS characters, or a usage error before anything is opened or signed
(``Batches.administer`` refuses them too: tests/clients/merchant/test_batch_ids.py).

Such a request used to be signed, stored and sent, and refused by the gateway as
DECODING_FAILURE; a close of batch "" whose answer was lost stayed pending under the key a
waiting open is kept under, and every ``batch open`` after it was refused, told to give a
``batch close`` the operator could not give."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.merchant.config import write_config
from clients.peers import PeerConfig
from setcore.capture import MAX_BATCH_ID_CHARS
from setcore.gateway_admin import TransactionPage
from setpay.v1 import gateway_admin_pb2
from tests.clients import conftest as clients_conftest
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory

# The client tests' bank and merchants, for the tests here that need a gateway.
bank = clients_conftest.bank
make_merchant = clients_conftest.make_merchant

TOO_LONG = "b" * (MAX_BATCH_ID_CHARS + 1)
CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE


@pytest.mark.parametrize("given", ["", TOO_LONG], ids=["empty", "too-long"])
@pytest.mark.parametrize("operation", ["close", "purge", "query"])
def test_a_batch_id_the_gateway_cannot_take_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], operation: str, given: str
) -> None:
    """Refused by the command line, before the merchant's database is opened (there is no
    gateway here: the old code went on to open the merchant, to sign, store and send it)."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:1", directory / "tls/root.pem")
    write_config(directory, merchant_id="shop", name="Shop", gateway=peer, ca=peer)
    argv = ["merchant", "--dir", str(directory), "batch", operation, "--batch", given]
    with pytest.raises(SystemExit) as exited:
        run_cli(argv, capsys)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"argument --batch: a batch id as batch open printed it, 1 to {MAX_BATCH_ID_CHARS}" in err
    )
    assert ("not empty" in err) if not given else (given not in err and "not repeated" in err)
    assert not (directory / "merchant.db").exists()


def test_the_longest_batch_id_reaches_the_gateway(
    bank: RunningBank, make_merchant: MerchantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """MAX_BATCH_ID_CHARS is the gateway's own bound: an id that long is decoded and
    looked up (BATCH_UNKNOWN, exit 1), not refused as DECODING_FAILURE."""
    merchant = make_merchant("m-cli-batch-longest")
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    status, out, err = run_cli([*base, "query", "--batch", "b" * MAX_BATCH_ID_CHARS], capsys)
    assert status == 1 and "BATCH_UNKNOWN" in out + err, out + err
    assert "DECODING_FAILURE" not in out + err


def test_batch_open_held_up_by_a_close_of_no_batch_names_serve(
    bank: RunningBank, make_merchant: MerchantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A close of batch "" an earlier release left waiting: ``batch open`` tells the
    operator to let serve send it, not to give ``batch close`` again, which the command
    line refuses (exit 2) for that id."""
    merchant = make_merchant("m-cli-batch-none-left")
    built = merchant.batches._build(CLOSE, "", True, TransactionPage(0, 0))
    merchant.store.add_batch_request(built)
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    status, out, err = run_cli([*base, "open"], capsys)
    assert status == 1, out + err
    assert "of no batch" in err and "let serve send it (its start-up round" in err
    assert "give batch close again" not in out + err
    with pytest.raises(SystemExit) as exited:
        run_cli([*base, "close", "--batch", ""], capsys)
    assert exited.value.code == 2
