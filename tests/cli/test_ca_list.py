"""``setpay ca list`` on a running bank: a merchant's certificates, revoked, filtered."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from cli import ca
from cli.fingerprint import colon_hex
from setcore.encoding import thumbprint
from setcore.pki.certificate import common_name_of
from tests.gateway.actors import (
    Cardholder,
    Merchant,
    World,
    open_world,
    register_cardholder,
    register_merchant,
)

MERCHANT_ID = "merchant-42"
# What a PAN scanner looks for: a run of 13 to 19 digits.
DIGIT_RUN = re.compile(r"\d{13,19}")
# thumbprint, serial, type, usage, not-after, state, subject
COLUMNS = 7


def _ca(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ca", *argv])
    code = ca.run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    for line in lines:
        assert DIGIT_RUN.search(line) is None, line
    return [line.split(maxsplit=COLUMNS - 1) for line in lines]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = open_world(tmp_path_factory.mktemp("ca-list") / "bank", "ec")
    yield made
    made.close()


@pytest.fixture(scope="module")
def merchant(world: World) -> Merchant:
    return register_merchant(world, MERCHANT_ID)


@pytest.fixture(scope="module")
def cardholder(world: World) -> Cardholder:
    return register_cardholder(world)


def _config(world: World) -> str:
    return str(world.directory / "setpay.toml")


def _merchant_thumbs(merchant: Merchant) -> dict[str, str]:
    credentials = merchant.credentials
    assert credentials.key_exchange_thumb is not None
    return {
        "signature": colon_hex(credentials.signature_thumb),
        "key-exchange": colon_hex(credentials.key_exchange_thumb),
    }


def test_a_merchants_two_certificates_then_one_revoked(
    world: World, merchant: Merchant, capsys: pytest.CaptureFixture[str]
) -> None:
    thumbs = _merchant_thumbs(merchant)
    code, out, err = _ca(["list", "--config", _config(world), "--subject", MERCHANT_ID], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert {row[0]: row[3] for row in rows} == {v: k for k, v in thumbs.items()}
    for row in rows:
        assert row[2] == "merchant" and row[5] == "live" and row[6] == MERCHANT_ID
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row[4]), row
    # The printed thumbprint and serial are what ``revoke`` takes.
    revoked = next(row for row in rows if row[3] == "key-exchange")
    kex_der = merchant.credentials.key_exchange_cert
    assert kex_der is not None
    assert ca.parse_thumb(revoked[0]) == thumbprint(kex_der)
    serial = x509.load_der_x509_certificate(kex_der).serial_number
    assert ca.parse_serial(revoked[1]) == serial
    code, _, err = _ca(["revoke", "--config", _config(world), "--thumb", revoked[0]], capsys)
    assert code == 0, err

    code, out, err = _ca(["list", "--config", _config(world), "--subject", MERCHANT_ID], capsys)
    assert code == 0, err
    assert [(row[0], row[5]) for row in _rows(out)] == [(thumbs["signature"], "live")]
    code, out, err = _ca(
        ["list", "--config", _config(world), "--subject", MERCHANT_ID, "--all"], capsys
    )
    assert code == 0, err
    assert {row[0]: row[5] for row in _rows(out)} == {
        thumbs["signature"]: "live",
        thumbs["key-exchange"]: "revoked",
    }
    # The default listing shows the bank's own live certificates, never the revoked one.
    code, out, err = _ca(["list", "--config", _config(world)], capsys)
    assert code == 0, err
    everything = _rows(out)
    assert thumbs["key-exchange"] not in {row[0] for row in everything}
    assert {row[2] for row in everything} >= {"brand-root", "payment-gateway", "merchant"}
    assert {row[5] for row in everything} == {"live"}


def test_subject_filters_and_an_unknown_one_prints_nothing(
    world: World, merchant: Merchant, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _ca(["list", "--config", _config(world), "--subject", "gateway-1"], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == 2 and {row[6] for row in rows} == {"gateway-1"}
    assert {row[2] for row in rows} == {"payment-gateway"}
    # Exact: a prefix of the merchant ID names no one.
    for subject in ("merchant-4", "nobody"):
        code, out, err = _ca(["list", "--config", _config(world), "--subject", subject, "--all"],
                             capsys)  # fmt: skip
        assert (code, out, err) == (0, "", "")


def test_a_cardholders_subject_is_a_random_id_in_colon_hex(
    world: World, cardholder: Cardholder, capsys: pytest.CaptureFixture[str]
) -> None:
    der = cardholder.credentials.signature_cert
    stored = common_name_of(x509.load_der_x509_certificate(der))
    shown = colon_hex(bytes.fromhex(stored))
    for subject in (shown, stored):
        code, out, err = _ca(["list", "--config", _config(world), "--subject", subject], capsys)
        assert code == 0, err
        rows = _rows(out)
        assert [(row[0], row[2], row[6]) for row in rows] == [
            (colon_hex(thumbprint(der)), "cardholder", shown)
        ]
    assert cardholder.card.pan.reveal() not in out


def test_a_bad_config_is_refused(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    code, out, err = _ca(["list", "--config", str(missing)], capsys)
    assert code == 1 and out == ""
    assert "cannot open the bank" in err and "nope.toml" in err
    garbage = tmp_path / "garbage.toml"
    garbage.write_text("this is not = = toml\n")
    code, out, err = _ca(["list", "--config", str(garbage)], capsys)
    assert code == 1 and out == "" and "cannot open the bank" in err
    # A configuration whose ca.db is not there: refused, and nothing is created.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / "setpay.toml"
    moved.write_text((world.directory / "setpay.toml").read_text())
    code, out, err = _ca(["list", "--config", str(moved)], capsys)
    assert code == 1 and out == "" and "no CA database" in err
    assert not (elsewhere / "ca.db").exists()


def test_list_needs_a_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _ca(["list"], capsys)
    assert exited.value.code == 2
