"""``setpay bank show-batch`` and ``check-books``, on a bank's SQLite ledger and on a
PostgreSQL one: a batch's state and totals per currency; the books audit, on healthy books
(exit 0) and on books a posting changed by SQL (each difference, exit 5). Neither needs
the ledger's keys, nor makes a ledger, nor prints a card number."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from cli import bank_books, merchant_batch
from gateway.ledger import KindTotals, TransactionKind
from gateway.ledger.reports import BatchTotals
from gateway.provisioning import init_bank
from setcore.pan import mask_pan
from tests.cards import card
from tests.cli.command_support import USAGE, run_bank
from tests.gateway.ledger.ledger_support import (
    EUR,
    MERCHANT,
    TEST_DATABASE,
    throwaway_pg_cluster,
)
from tests.gateway.ledger.operator_support import Settled, settle_bank_ledger

TYPED = card("411111", 7)  # a card number typed where an id goes
JPY, BHD = 392, 48  # no minor unit; three digits

Raw = Callable[[str], list[tuple[object, ...]]]
"""Every row of one SQL statement, run over a connection of its own."""


@dataclass(frozen=True)
class Made:
    """A bank with a settled batch, on one store, and raw SQL on its ledger."""

    config: Path
    env: dict[str, str]
    """The ``SETPAY_*`` values the bank's commands run with (its ledger's URL)."""
    settled: Settled
    raw: Raw


def _sqlite(path: Path) -> Raw:
    def raw(sql: str) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(path)
        try:
            rows = list(conn.execute(sql))
            conn.commit()
            return rows
        finally:
            conn.close()

    return raw


def _postgres(conninfo: str) -> Raw:
    def raw(sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            cursor = conn.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    return raw


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def made(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Made]:
    """A new bank (``setpay init``'s), its ledger the SQLite file init made or a new
    PostgreSQL schema, holding a merchant, a card and a batch of every settlement kind."""
    directory = tmp_path_factory.mktemp(f"bank-books-{request.param}") / "bank"
    init_bank(directory, env={})
    config_path = directory / "setpay.toml"
    with _ledger_on(request.param, directory) as (env, raw):
        yield Made(config_path, env, settle_bank_ledger(config_path, env), raw)


@pytest.fixture
def bank_env(made: Made, monkeypatch: pytest.MonkeyPatch) -> Made:
    """``made``, with its ``SETPAY_*`` values set for the commands this test runs."""
    for name, value in made.env.items():
        monkeypatch.setenv(name, value)
    return made


@contextlib.contextmanager
def _ledger_on(kind: str, directory: Path) -> Iterator[tuple[dict[str, str], Raw]]:
    """The environment naming the ledger of the bank in ``directory`` on ``kind`` (the
    SQLite file init made, or a new schema of a throwaway PostgreSQL cluster), and raw
    SQL on it."""
    if kind == "sqlite":
        yield {}, _sqlite(directory / "ledger.db")
        return
    with throwaway_pg_cluster() as pg:
        url = pg.ledger_url("bank_books")
        yield {"SETPAY_LEDGER": url}, _postgres(pg.conninfo(TEST_DATABASE, "bank_books"))


def _bank(made: Made, *argv: str) -> list[str]:
    return ["--config", str(made.config), *argv]


def _show(made: Made, merchant: str, batch: str) -> list[str]:
    return _bank(made, "show-batch", "--merchant-id", merchant, "--batch", batch)


def test_show_batch_prints_the_state_and_totals_per_currency(
    bank_env: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = bank_env.settled.batch_id
    code, out, err = run_bank(_show(bank_env, MERCHANT, batch), capsys)
    assert (code, err) == (0, "")
    first, *rest = out.splitlines()
    assert re.fullmatch(
        rf"merchant {MERCHANT} batch {batch}: open, opened \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
        first,
    ), first
    assert rest == [
        f"  currency {EUR} (exponent 2):",
        "    captures 2: 42.50 (4250 minor units)",
        "    capture reversals 1: 12.50 (1250 minor units)",
        "    credits 1: 8.00 (800 minor units)",
        "    credit reversals 1: 8.00 (800 minor units)",
        "    net to the merchant: 30.00 (3000 minor units)",
    ]


def test_show_batch_of_an_unknown_merchant_or_batch_is_an_error(
    bank_env: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1, as ``show-merchant`` for a merchant without an account."""
    batch = bank_env.settled.batch_id
    code, out, err = run_bank(_show(bank_env, "nobody", batch), capsys)
    assert (code, out, err) == (1, "", "setpay bank: merchant nobody has no account\n")
    code, _, shown_merchant = run_bank(_bank(bank_env, "show-merchant", "--merchant-id",
                                             "nobody"), capsys)  # fmt: skip
    assert code == 1 and shown_merchant == err
    unknown = "batch-" + "a" * bank_books.BATCH_ID_CHARS
    code, out, err = run_bank(_show(bank_env, MERCHANT, unknown), capsys)
    assert (code, out) == (1, "")
    assert err == f"setpay bank: merchant {MERCHANT} has no batch {unknown}\n"


def test_show_batch_never_prints_a_card_number(
    bank_env: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_bank(_show(bank_env, TYPED, bank_env.settled.batch_id), capsys)
    assert (code, out) == (1, "")
    assert err == f"setpay bank: merchant {mask_pan(TYPED)} has no account\n"
    with pytest.raises(SystemExit) as stopped:
        run_bank(_show(bank_env, MERCHANT, TYPED), capsys)
    assert stopped.value.code == USAGE
    refused = capsys.readouterr().err
    assert (
        "a batch id is batch- and 16 lowercase" in refused and "(given: 16 characters)" in refused
    )
    assert re.search(r"\d{13}", refused) is None


@pytest.mark.parametrize(
    "given", ["", "batch-", "batch-AAAAAAAAAAAAAAAA", "batch-aaaaaaaaaaaaaaa1", "batch-" + "a" * 17]
)
def test_a_batch_id_not_of_the_ledger_s_form_is_a_usage_error(
    bank_env: Made, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_bank(_show(bank_env, MERCHANT, given), capsys)
    assert stopped.value.code == USAGE


def test_check_books_on_healthy_books(bank_env: Made, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_bank(_bank(bank_env, "check-books"), capsys) == (0, "books balance\n", "")


def test_check_books_lists_each_difference_of_a_posting_changed_by_sql(
    bank_env: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """A credit's amount raised by SQL: exit 5, the accounts, hold and reversal it no
    longer agrees with each printed; put back, the books balance again."""
    hold = bank_env.settled.hold_id
    ((credit, merchant, card_account),) = bank_env.raw(
        "SELECT id, debit_account_id, credit_account_id FROM transfers"
        f" WHERE hold_id = '{hold}' AND kind = 'credit'"
    )
    ((reversal,),) = bank_env.raw(f"SELECT id FROM transfers WHERE reverses_id = {credit}")
    bank_env.raw(f"UPDATE transfers SET amount = amount + 5 WHERE id = {credit}")
    try:
        code, out, err = run_bank(_bank(bank_env, "check-books"), capsys)
    finally:
        bank_env.raw(f"UPDATE transfers SET amount = amount - 5 WHERE id = {credit}")
    assert (code, err) == (bank_books.EXIT_DIFFERS, "")
    lines = out.splitlines()
    assert sorted(lines[:-1]) == sorted([
        f"account {merchant}: balances differ from its transfers",
        f"account {card_account}: balances differ from its transfers",
        f"transfer {reversal} (credit-reversal) does not undo the whole of an original of "
        "its hold and of the kind it reverses",
        f"hold {hold}: credited differs from its transfers",
    ])  # fmt: skip
    assert lines[-1] == "4 differences: the books do not balance"
    assert run_bank(_bank(bank_env, "check-books"), capsys) == (0, "books balance\n", "")


def test_the_exit_status_of_differences_is_the_reconciliation_s() -> None:
    assert bank_books.EXIT_DIFFERS == merchant_batch.EXIT_DIFFERS == 5


def test_neither_command_opens_the_ledger_keys(
    bank_env: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands that read a PAN cannot run without ``ledger.keys``; these can."""
    keys = bank_env.config.parent / "ledger.keys"
    keys.rename(keys.with_suffix(".away"))
    try:
        shown = run_bank(_bank(bank_env, "show-merchant", "--merchant-id", MERCHANT), capsys)
        checked = run_bank(_bank(bank_env, "check-books"), capsys)
        batch = run_bank(_show(bank_env, MERCHANT, bank_env.settled.batch_id), capsys)
    finally:
        keys.with_suffix(".away").rename(keys)
    assert shown[0] == 1 and "ledger.keys" in shown[2]
    assert checked == (0, "books balance\n", "")
    assert batch[0] == 0 and batch[1].startswith(f"merchant {MERCHANT} batch ")


def test_no_ledger_is_made_where_there_is_none(
    made: Made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "ledger.db"
    monkeypatch.setenv("SETPAY_LEDGER", f"sqlite:{missing}")
    for argv in (["check-books"], ["show-batch", "--merchant-id", MERCHANT, "--batch",
                                   made.settled.batch_id]):  # fmt: skip
        code, out, err = run_bank(_bank(made, *argv), capsys)
        assert (code, out) == (1, "")
        assert err.startswith(f"setpay bank: no ledger at {missing} ")
    assert list(tmp_path.iterdir()) == []


def _batch(totals: dict[int, dict[TransactionKind, KindTotals]]) -> BatchTotals:
    return BatchTotals(
        merchant_id=MERCHANT, batch_id="batch-" + "b" * bank_books.BATCH_ID_CHARS,
        status="purged", opened_at_ms=0, closed_at_ms=86_400_000, account_currency=JPY,
        totals=totals,
    )  # fmt: skip


def test_each_currency_is_shown_by_its_own_exponent_and_a_negative_net_as_one() -> None:
    """A batch that only takes back (a capture reversal filed after its original's batch
    closed) nets below zero; yen have no minor unit, dinars three digits; a currency that
    is not the merchant account's is shown apart, and said to be a fault."""
    none = {kind: KindTotals(0, 0) for kind in TransactionKind}
    lines = bank_books.batch_lines(_batch({
        BHD: {**none, TransactionKind.CAPTURE: KindTotals(1, 1005)},
        JPY: {**none, TransactionKind.CAPTURE_REVERSAL: KindTotals(2, 1500)},
    }))  # fmt: skip
    assert lines == [
        f"merchant {MERCHANT} batch batch-{'b' * 16}: purged, opened 1970-01-01 00:00:00 UTC, "
        "closed 1970-01-02 00:00:00 UTC",
        f"  currency {BHD} (exponent 3; not the merchant account's {JPY}: run check-books):",
        "    captures 1: 1.005 (1005 minor units)",
        "    capture reversals 0: 0.000 (0 minor units)",
        "    credits 0: 0.000 (0 minor units)",
        "    credit reversals 0: 0.000 (0 minor units)",
        "    net to the merchant: 1.005 (1005 minor units)",
        f"  currency {JPY} (exponent 0):",
        "    captures 0: 0 (0 minor units)",
        "    capture reversals 2: 1500 (1500 minor units)",
        "    credits 0: 0 (0 minor units)",
        "    credit reversals 0: 0 (0 minor units)",
        "    net to the merchant: -1500 (-1500 minor units)",
    ]


@pytest.mark.parametrize(
    ("amount", "digits", "shown"),
    [(0, 2, "0.00"), (5, 2, "0.05"), (-5, 2, "-0.05"), (-4250, 2, "-42.50"), (7, 0, "7"),
     (-1, 3, "-0.001"), (123456, 3, "123.456")],
)  # fmt: skip
def test_major_units(amount: int, digits: int, shown: str) -> None:
    assert bank_books.major_units(amount, digits) == shown
