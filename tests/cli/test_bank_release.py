"""``setpay bank release-card``: a card refused outright at the Cardholder CA registers
again at once; the command names the card by its masked number only, and runs beside
the bank (the CA's own connection to ca.db open, even in a write transaction)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca.card_failures import CARD_FAILURE_LIMIT, card_refused, count_failure
from gateway.ca.store import CaStore
from gateway.config import BankConfig, load
from gateway.issuer import LedgerDirectory, open_ledger
from gateway.ledger import Ledger
from gateway.provisioning import InitResult, init_bank
from setcore.freshness import now_ms
from setcore.pan import PAN
from tests.cards import card
from tests.cli.command_support import run_bank

# Cards of these tests' own: BIN and serials.
TEST_BIN = "499998"
EXPIRY = "203012"
# How long the running bank holds ca.db's write lock while the command runs: well under
# the store's busy timeout (five seconds), long enough to see the command wait for it.
HOLD_SECONDS = 0.5


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-release") / "bank", env={})


@pytest.fixture
def config(made: InitResult) -> BankConfig:
    return load(made.directory / "setpay.toml")


@pytest.fixture
def ledger(config: BankConfig) -> Iterator[Ledger]:
    opened = open_ledger(config)
    yield opened
    opened.close()


@pytest.fixture
def running(config: BankConfig) -> Iterator[CaStore]:
    """ca.db as the running bank's CA holds it open."""
    store = open_ca_store(config)
    yield store
    store.close()


def _refused_outright(running: CaStore, ledger: Ledger, pan: str) -> bytes:
    """Refuse ``pan`` at the CA until it is past its limit, under the name the CA gives it
    (``LedgerDirectory.card_key``, as the bank wires it); that name."""
    key = LedgerDirectory(ledger).card_key(PAN(pan))
    now = now_ms()
    with running.write() as tx:
        for n in range(CARD_FAILURE_LIMIT):
            count_failure(tx, key, now + n)
    with running.read() as tx:
        assert card_refused(tx, key, now_ms())
    return key


def _release(made: InitResult, *card_args: str) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml"), "release-card", *card_args]


def test_a_card_refused_outright_is_released_by_its_card_file(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ledger: Ledger,
    running: CaStore,
) -> None:
    pan = card(TEST_BIN, 1)
    (tmp_path / "pan.txt").write_text(pan + "\n")
    card_file = tmp_path / "card.json"
    opening = ["--config", str(made.directory / "setpay.toml"), "open-account", "--limit",
               "5000", "--expiry", EXPIRY, "--pan-file", str(tmp_path / "pan.txt"),
               "--card-out", str(card_file)]  # fmt: skip
    code, _, err = run_bank(opening, capsys)
    assert (code, err) == (0, "")
    key = _refused_outright(running, ledger, pan)
    code, out, err = run_bank(_release(made, "--card", str(card_file)), capsys)
    assert (code, err) == (0, "")
    assert f"card {PAN(pan).masked}: released {CARD_FAILURE_LIMIT} refused registrations" in out
    assert "refused outright until" in out and pan not in out
    with running.read() as tx:  # the running CA sees it at once: the card registers again
        assert tx.card_failures(key) is None
        assert not card_refused(tx, key, now_ms())
    code, out, err = run_bank(_release(made, "--card", str(card_file)), capsys)
    assert (code, err) == (0, "")
    assert out == f"card {PAN(pan).masked}: no refused registrations counted; nothing to release\n"


def test_the_release_waits_for_the_running_banks_write_transaction(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ledger: Ledger,
    running: CaStore,
) -> None:
    pan = card(TEST_BIN, 2)
    key = _refused_outright(running, ledger, pan)
    pan_file = tmp_path / "pan.txt"
    pan_file.write_text(pan + "\n")
    holding = threading.Event()
    released: list[float] = []

    def decide_something() -> None:
        with running.write():
            holding.set()
            time.sleep(HOLD_SECONDS)
            released.append(time.monotonic())  # the lock goes as the block ends

    worker = threading.Thread(target=decide_something)
    worker.start()
    try:
        holding.wait()
        code, out, err = run_bank(_release(made, "--pan-file", str(pan_file)), capsys)
        finished = time.monotonic()
    finally:
        worker.join()
    assert (code, err) == (0, "")
    assert "released" in out and pan not in out
    # It waited for the lock, not failed on it: it ended after the lock was let go (timed
    # from here, a loaded machine slow to start it would shorten the wait it saw).
    assert released and finished > released[0]
    with running.read() as tx:
        assert tx.card_failures(key) is None


def test_a_file_that_is_no_card_file_is_named_not_quoted(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pan = card(TEST_BIN, 3)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"number": pan}))
    code, out, err = run_bank(_release(made, "--card", str(wrong)), capsys)
    assert (code, out) == (1, "")
    assert err == f"setpay bank: --card {wrong} is not a card file (KeyError)\n"
    code, out, err = run_bank(_release(made, "--card", str(tmp_path / "missing.json")), capsys)
    assert code == 1 and err.startswith("setpay bank: cannot read --card")
    assert pan not in err


def test_the_card_is_named_once(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        run_bank(_release(made), capsys)
    assert usage.value.code == 2
    both = ["--card", str(tmp_path / "c.json"), "--pan-file", str(tmp_path / "p.txt")]
    with pytest.raises(SystemExit) as usage:
        run_bank(_release(made, *both), capsys)
    assert usage.value.code == 2
