"""``setpay bank open-merchant`` takes only a merchant ID the Merchant CA registers: any
other is a usage error (exit 2) and opens nothing, since no merchant could ever register
for the account, and no command closes one."""

from __future__ import annotations

import argparse

import pytest

from cli import bank
from gateway.ledger import Ledger, UnknownMerchant
from gateway.provisioning import InitResult, init_bank
from setcore.errors import ProtocolError
from setcore.pki.extensions import MAX_MERCHANT_ID_CHARS
from setcore.registration import request_kind
from setcore.registration_merchant import identity_of
from setpay.v1 import registration_pb2
from tests.cli.command_support import USAGE, run_bank

# Each refused with the part of the rule it breaks: what a merchant ID is printed among
# would be forged (a line break), or turned around on screen (an override); too long for
# the CA (a certificate's CommonName).
REFUSED = {
    "shop-42\nopened merchant shop-43": "U+000A",
    "shop-\u202e24-pohs": "U+202E RIGHT-TO-LEFT OVERRIDE",
    "shop\x00": "U+0000",
    "m" * (MAX_MERCHANT_ID_CHARS + 1): f"1 to {MAX_MERCHANT_ID_CHARS} characters",
    "": f"1 to {MAX_MERCHANT_ID_CHARS} characters",
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-merchant-id") / "bank", env={})


def _open_merchant(made: InitResult, merchant_id: str) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml"), "open-merchant",
            "--merchant-id", merchant_id]  # fmt: skip


def _ca_registers(merchant_id: str) -> bool:
    """Whether the Merchant CA takes this ID in a registration's IDData."""
    id_data = registration_pb2.IDData()
    id_data.merchant.merchant_id = merchant_id
    id_data.merchant.merchant_name = "Shop"
    try:
        identity_of(id_data, request_kind(registration_pb2.REQUEST_TYPE_MER_INITIAL_BOTH))
    except ProtocolError:
        return False
    return True


@pytest.mark.parametrize("merchant_id", sorted(REFUSED))
def test_an_id_the_merchant_ca_refuses_opens_nothing(
    made: InitResult, capsys: pytest.CaptureFixture[str], ledger: Ledger, merchant_id: str
) -> None:
    assert not _ca_registers(merchant_id)
    parser = argparse.ArgumentParser(prog="setpay")
    bank.add_parser(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["bank", *_open_merchant(made, merchant_id)])
    assert stopped.value.code == USAGE
    out, err = capsys.readouterr()
    assert out == "" and "argument --merchant-id: a merchant ID " in err
    assert REFUSED[merchant_id] in err
    if merchant_id:
        assert merchant_id not in err  # named by its length or code point, never shown
    if merchant_id and "\x00" not in merchant_id:  # the ledger takes neither to look for
        with pytest.raises(UnknownMerchant):
            ledger.merchant_account(merchant_id)


@pytest.mark.parametrize("merchant_id", ["shop 42", "m" * MAX_MERCHANT_ID_CHARS, "caf\u00e9-7"])
def test_an_id_the_merchant_ca_registers_is_opened(
    made: InitResult, capsys: pytest.CaptureFixture[str], ledger: Ledger, merchant_id: str
) -> None:
    assert _ca_registers(merchant_id)
    code, out, err = run_bank(_open_merchant(made, merchant_id), capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"opened merchant {merchant_id} account ")
    assert ledger.merchant_account(merchant_id).merchant_id == merchant_id
