"""Numbers typed on the command line are ASCII digits (``cli.number_options``): a sign,
an underscore, a space or another script's digits, all of which ``int`` and ``float``
took silently, is a usage error (exit 2) naming the option and the text, and nothing is
changed. Here the bank's side: ``bank``, ``keys``, ``ca`` and ``bench``; the merchant's
and the wallet's are in ``test_number_options_parties``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cryptography import x509

from cli import ca, keys
from cli.number_options import (
    CARD_DIGITS,
    bound_text,
    decimal,
    read_decimal,
    read_whole,
    shown,
    whole,
)
from gateway.ports import parse_integer
from gateway.provisioning import InitResult, init_bank
from hsm.uri import PASSPHRASE_ENV
from setcore.pan import MIN_PAN_DIGITS
from tests.ca_db import published_revocation
from tests.cards import card
from tests.cli.command_support import USAGE, run_bank, run_command
from tests.clients.loadtest.conftest import run_bench

# Five typed as int() took it: a sign, an underscore, fullwidth, a space, Arabic-Indic.
FIVES = ["+5", "5_000", "\uff15", " 5", "\u0665"]
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))


def _usage(run: object, capsys: pytest.CaptureFixture[str]) -> str:
    """argparse's usage error (exit 2) from ``run()``; its stderr."""
    with pytest.raises(SystemExit) as stopped:
        run()  # type: ignore[operator]
    assert stopped.value.code == USAGE
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "text", ["5", "0", "-5", "007", "+5", " 5", "5 ", "5_0", "\uff15", "\u0665", "", "-", "5.0"]
)
def test_a_whole_number_is_read_as_the_bank_reads_its_settings(text: str) -> None:
    assert read_whole(text) == parse_integer(text)


def test_the_digits_not_repeated_are_a_card_number_s() -> None:
    assert CARD_DIGITS == MIN_PAN_DIGITS


def test_a_value_that_could_be_a_card_number_is_not_repeated() -> None:
    pan = card("499999", 41)
    spaced = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    for given in (pan, spaced, pan.translate(FULLWIDTH)):
        assert pan[6:12] not in shown(given) and "not repeated" in shown(given)
    assert shown("+5") == "'+5'"
    assert shown("x" * 41) == "the 41 characters given (not repeated)"


def test_a_bound_is_never_a_card_number_s_run_of_digits() -> None:
    assert bound_text(500) == "500"
    assert bound_text(10**12) == "10**12"
    assert bound_text(2**63 - 1) == "2**63 - 1"


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e3", " 1", "+1", "1_0", "\uff11", "."])
def test_a_decimal_number_is_digits_with_a_point(text: str) -> None:
    assert read_decimal(text) is None
    with pytest.raises(argparse.ArgumentTypeError, match=r"from 0 to 10 s .* not "):
        decimal(0, 10, unit="s")(text)


def test_a_decimal_number_and_a_whole_one_in_range_are_taken() -> None:
    assert [read_decimal(t) for t in ("5", "0.5", ".5", "5.")] == [5.0, 0.5, 0.5, 5.0]
    assert read_decimal("9" * 400) is None  # float() would read infinity
    assert whole(0, 10)("010") == 10
    with pytest.raises(argparse.ArgumentTypeError, match="from 0 to 10 in digits 0-9, not '11'"):
        whole(0, 10)("11")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    """A real bank: the old code opened the account and revoked the certificate."""
    return init_bank(tmp_path_factory.mktemp("number-options") / "bank", env={})


@pytest.mark.parametrize("limit", FIVES)
def test_a_credit_limit_not_in_digits_opens_no_account(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    out = tmp_path / "card.json"
    argv = ["--config", str(made.config_path), "open-account", "--limit", limit,
            "--expiry", "203012", "--card-out", str(out)]  # fmt: skip
    err = _usage(lambda: run_bank(argv, capsys), capsys)
    said = "must be a whole number from 0 to 10**12 (minor units) in digits 0-9"
    assert f"argument --limit: {said}, not {limit!r}" in err
    assert not out.exists()


def _revocations(made: InitResult) -> int:
    return published_revocation(made.directory)[0].sequence_num


@pytest.mark.parametrize("form", ["sign", "underscore", "fullwidth"])
def test_a_serial_number_not_in_ascii_revokes_nothing(
    made: InitResult, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    der = (made.directory / "certs" / "gateway-sig.der").read_bytes()
    serial = str(x509.load_der_x509_certificate(der).serial_number)
    given = {
        "sign": "+" + serial,
        "underscore": f"{serial[:3]}_{serial[3:]}",
        "fullwidth": serial.translate(FULLWIDTH),
    }[form]
    before = _revocations(made)
    argv = ["ca", "revoke", "--config", str(made.config_path), "--serial", given]
    err = _usage(lambda: run_command(ca, argv, capsys), capsys)
    assert "argument --serial: a serial number is decimal (digits 0-9)" in err
    assert serial[3:] not in err  # a long run of digits is not repeated
    assert _revocations(made) == before


def test_a_serial_number_copied_with_its_indent_is_taken() -> None:
    assert ca.parse_serial("  0a:ff\t") == 0x0AFF


@pytest.mark.parametrize("version", ["+2", "0_2", "\uff12", " 2", "\u0662"])
def test_a_key_version_not_in_digits_deletes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    version: str,
) -> None:
    """The old code read each as version 2, and destroyed it."""
    monkeypatch.setenv(PASSPHRASE_ENV, "number options keystore")
    uri = f"soft:{tmp_path / 'keystore'}"
    for _ in range(2):
        argv = ["keys", "generate", "--keys", uri, "--label", "shop-sig", "--usage",
                "signature", "--algorithm", "ec-p256"]  # fmt: skip
        assert run_command(keys, argv, capsys)[0] == 0
    argv = ["keys", "delete", "--keys", uri, "--label", "shop-sig", "--version", version]
    err = _usage(lambda: run_command(keys, argv, capsys), capsys)
    said = "must be a whole number from 1 to 999999 in digits 0-9"
    assert f"argument --version: {said}, not {version!r}" in err
    code, out, _ = run_command(keys, ["keys", "list", "--keys", uri], capsys)
    assert code == 0 and [line.split()[1] for line in out.splitlines()[1:]] == ["1", "2"]


@pytest.mark.parametrize(
    ("option", "given"),
    [*(("--concurrency", five) for five in FIVES), *(("--rate", five) for five in FIVES),
     ("--duration", "1e1"), ("--load-fraction", "\uff10.5"), ("--amount", "1_000"),
     ("--channels", " 2"), ("--requests", "+100"), ("--cardholders", "\u0665"),
     ("--timeout", "+5"), ("--p99-max", "inf"), ("--rates", "100,+200")],
)  # fmt: skip
def test_a_bench_number_not_in_digits_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, given: str
) -> None:
    """Refused before the option checks (here ``--workers 0``, which the old code
    refused instead, after reading the number), before any bank is made."""
    workdir = tmp_path / "bank"
    code = run_bench(["authorize", "--spawn", "--workdir", str(workdir), "--workers", "0",
                      option, given])  # fmt: skip
    err = capsys.readouterr().err
    assert code == USAGE
    assert err.startswith(f"setpay bench: {option} ")
    assert f"not {given!r}" in err and "digits 0-9" in err
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("option", "given"),
    [*(("--workers", five) for five in FIVES), ("--threads", "+4"), ("--delay-ms", "nan"),
     ("--delay-ms", "inf"), ("--delay-ms", "-1"), ("--delay-ms", "\uff15")],
)  # fmt: skip
def test_a_reference_service_number_not_in_digits_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, given: str
) -> None:
    """The old code read it, then failed (exit 1) on the configuration, or served."""
    argv = ["serve", "--mode", "echo", "--config", str(tmp_path / "none.toml"), option, given]
    err = _usage(lambda: run_bench(argv), capsys)
    assert f"argument {option}: must be a" in err and f"not {given!r}" in err
