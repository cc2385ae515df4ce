"""``setpay wallet register`` and ``setpay merchant register`` pin the brand root on first
use only once the CA's revocation data verified under it: a wrong ``--root`` is refused
and pins nothing, so the right one can be given next. It used to be pinned before
anything was checked, and the right root was then refused for good ("trusts only the
pinned root"). Once pinned, another root is refused as before.

The commands run against a real bank. Without their passphrases they stop right after
the pin: what is pinned is all these tests look at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from clients.identity import read_root
from clients.merchant.config import load as load_merchant
from clients.peers import PeerConfig
from clients.wallet.config import load as load_wallet
from clients.wallet.config import write_config as write_wallet_config
from gateway.provisioning import init_bank
from hsm.uri import PASSPHRASE_ENV
from setcore.pki import truststore
from setcore.pki.issuance import utc as real_utc
from tests.cards import VISA
from tests.cli.root_pin_support import assert_nothing_pinned, run_with_small_files, sha256
from tests.clients.bank_support import RunningBank, configure_merchant, copy_tls, serving_bank
from tests.clients.cli_support import run_cli

KEYSTORE_PASSPHRASE = "keystore passphrase for the root pin tests"
# Past a BCI's one-day lifetime (``setcore.pki.bci.BCI_LIFETIME``) and its clock skew.
CLOCK_AHEAD = timedelta(days=2)
WALLET_PASSPHRASE_ENV = "SETPAY_WALLET_PASSPHRASE"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBank]:
    with serving_bank(tmp_path_factory.mktemp("bank") / "bank", KEYSTORE_PASSPHRASE) as running:
        yield running


@pytest.fixture(scope="module")
def other_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real brand root of the same brand, but another bank's: not the CA's."""
    made = init_bank(tmp_path_factory.mktemp("other") / "bank", env={})
    return made.directory / "certs/brand-root.der"


def _right_root(bank: RunningBank) -> Path:
    return bank.directory / "certs/brand-root.der"


@pytest.fixture(autouse=True)
def _no_passphrases(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands stop after pinning (the bank opened its keys already)."""
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.delenv(WALLET_PASSPHRASE_ENV, raising=False)


def _wallet(bank: RunningBank, directory: Path, ca_target: str | None = None) -> list[str]:
    """A wallet directory asking ``bank``'s CA (or ``ca_target``); its register command."""
    copy_tls(bank, directory, ("root.pem",))
    write_wallet_config(
        directory, ca=PeerConfig(ca_target or bank.ca_target, directory / "tls/root.pem")
    )
    card = directory.parent / "card.json"
    fd = os.open(card, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pan": VISA, "expiry": "203012"}, handle)
    return ["wallet", "--dir", str(directory), "register", "--card", str(card)]


def _merchant(bank: RunningBank, directory: Path) -> list[str]:
    configure_merchant(bank, directory, directory.name, pin_root=False)
    return ["merchant", "--dir", str(directory), "register"]


def test_a_wrong_root_pins_nothing_and_the_right_one_is_then_taken(
    bank: RunningBank, other_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for party, register, pin, stops_at in (
        ("wallet", _wallet(bank, tmp_path / "w" / "wallet"),
         load_wallet(tmp_path / "w" / "wallet").root, WALLET_PASSPHRASE_ENV),
        ("merchant", _merchant(bank, tmp_path / "m-first-use"),
         load_merchant(tmp_path / "m-first-use").root, PASSPHRASE_ENV),
    ):  # fmt: skip
        status, out, err = run_cli([*register, "--root", str(other_root)], capsys)
        assert (status, out) == (1, ""), party
        assert f"setpay {party}: the revocation data of the CA at {bank.ca_target}" in err
        assert f"does not verify under --root {other_root}" in err
        assert "give the brand root of that CA" in err
        assert f"(SHA-256 {sha256(other_root.read_bytes())})" in err and "nothing pinned" in err
        assert_nothing_pinned(pin)

        status, _, err = run_cli([*register, "--root", str(_right_root(bank))], capsys)
        assert status == 1 and stops_at in err, err  # past the pin
        assert read_root(pin) == bank.brand_root
        assert pin.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")

        # The pin holds: another root is refused from now on, the same one is fine.
        status, _, err = run_cli([*register, "--root", str(other_root)], capsys)
        assert status == 1 and "trusts only the pinned root" in err
        status, _, err = run_cli([*register, "--root", str(_right_root(bank))], capsys)
        assert status == 1 and stops_at in err
        assert read_root(pin) == bank.brand_root


def test_revocation_data_out_of_its_window_is_not_blamed_on_the_root(
    bank: RunningBank,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The right root, but a clock two days ahead (as a CA that stopped re-signing its
    BCI would be): nothing pinned, and the message sends the user to the clock and the
    CA, not to look for another root; the clock right, the same root is taken."""
    ahead = real_utc(None) + CLOCK_AHEAD
    for party, register, pin in (
        ("wallet", _wallet(bank, tmp_path / "w" / "wallet"),
         load_wallet(tmp_path / "w" / "wallet").root),
        ("merchant", _merchant(bank, tmp_path / "m-clock"),
         load_merchant(tmp_path / "m-clock").root),
    ):  # fmt: skip
        with monkeypatch.context() as clock:
            clock.setattr(truststore, "utc", lambda at=None: real_utc(at) if at else ahead)
            status, out, err = run_cli([*register, "--root", str(_right_root(bank))], capsys)
        assert (status, out) == (1, ""), party
        assert f"setpay {party}: the revocation data of the CA at {bank.ca_target} is " in err
        assert "not usable now: " in err and "the BCI ended at " in err
        assert "check this machine's clock and the CA; nothing pinned" in err
        assert "give the brand root" not in err and "does not verify under" not in err
        assert_nothing_pinned(pin)

        status, _, err = run_cli([*register, "--root", str(_right_root(bank))], capsys)
        assert status == 1 and "PASSPHRASE" in err, err  # past the pin
        assert read_root(pin) == bank.brand_root


def test_nothing_is_pinned_before_the_ca_answers(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No CA listening: the root, right as it is, is not pinned on trust alone."""
    directory = tmp_path / "wallet"
    register = _wallet(bank, directory, ca_target="127.0.0.1:9")
    status, _, err = run_cli([*register, "--root", str(_right_root(bank))], capsys)
    assert status == 1 and "setpay wallet: " in err and WALLET_PASSPHRASE_ENV not in err
    assert_nothing_pinned(load_wallet(directory).root)


def test_a_root_that_is_no_brand_root_is_refused_before_the_ca_is_asked(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "shop"
    register = _merchant(bank, directory)
    tls_root = bank.tls / "root.pem"  # the transport CA's: a certificate, not the brand's
    status, _, err = run_cli([*register, "--root", str(tls_root)], capsys)
    assert status == 1
    assert err.startswith(f"setpay merchant: --root {tls_root}: ")
    assert "brand root" in err
    assert_nothing_pinned(load_merchant(directory).root)


def test_the_pin_is_written_whole_or_not_at_all(bank: RunningBank, tmp_path: Path) -> None:
    """A write that fails part way (here a file-size limit; a full disk alike) leaves no
    pinned root, rather than a truncated one every later command would trip over."""
    for register, pin in (
        (_wallet(bank, tmp_path / "w" / "wallet"), load_wallet(tmp_path / "w" / "wallet").root),
        (_merchant(bank, tmp_path / "shop"), load_merchant(tmp_path / "shop").root),
    ):
        done = run_with_small_files([*register, "--root", str(_right_root(bank))])
        assert done.returncode == 1 and "File too large" in done.stderr, done.stderr
        assert_nothing_pinned(pin)
