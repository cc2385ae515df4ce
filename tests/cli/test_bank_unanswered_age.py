"""``setpay bank settle-unanswered`` refuses a decision too young to settle by hand unless
the operator says ``--younger-ok``, and ``show-unanswered`` and the preview show each
decision's age; on a bank's SQLite ledger and on a PostgreSQL one.

Before, a decision milliseconds old, whose answer the gateway was storing or the
merchant's next retry would build, was settled by hand as readily as one left for days,
and that answer refused for ever; no listing said how old a decision was. Now one decided
less than ``SETTLE_MIN_AGE_MS`` (12 minutes 30 s) ago by the ledger's own record, or
dated ahead of this host's clock (the hosts' clocks differ, or one was set back since), is
refused, exit 1, the ledger unchanged, in the preview and with ``--yes`` alike;
``--younger-ok`` settles it.

Real parts: ``init_bank``, the bank's ledger opened as the gateway opens it, the commands
through their own parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger.settle_age import SETTLE_MIN_AGE_MS
from tests.cli.command_support import run_bank
from tests.cli.unanswered_support import REASON, Made, aged, left_unanswered, made_bank
from tests.gateway.ledger.ledger_support import PgCluster, throwaway_pg_cluster

# A run of digits as long as a card number's: none is ever printed but the RRPID's hex.
CARD_LENGTH_RUN = re.compile(r"\d{13}")


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgres"])
def made(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Made:
    """A new bank with a merchant and a card on a SQLite or a PostgreSQL ledger."""
    return made_bank(request, tmp_path, monkeypatch)


def _settle(made: Made, rrpid: bytes, *flags: str) -> list[str]:
    return made.bank("settle-unanswered", "--rrpid", rrpid.hex(), "--reason", REASON, *flags)


def _refused_young(made: Made, rrpid: bytes, capsys: pytest.CaptureFixture[str], said: str) -> None:
    """Both the preview and ``--yes`` refuse the decision as too young: exit 1, its line
    and age shown, ``said`` in the error, no card-length run of digits, nothing changed."""
    before = made.requests()
    for flags in ([], ["--yes"]):
        code, out, err = run_bank(_settle(made, rrpid, *flags), capsys)
        assert code == 1, (flags, out, err)
        assert out.startswith(rrpid.hex()) and " awaiting its answer" in out, out
        assert err.startswith(f"setpay bank: request {rrpid.hex()} ") and re.search(said, err)
        assert "--younger-ok if its answer can never be built; nothing changed" in err, err
        assert CARD_LENGTH_RUN.search((out + err).replace(rrpid.hex(), "")) is None
        assert made.requests() == before
    assert made.counted() == 1


def test_a_decision_seconds_old_is_refused_unless_the_operator_says_so(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    rrpid = left_unanswered(made, age_ms=0)
    code, out, err = run_bank(made.bank("show-unanswered"), capsys)
    assert (code, err) == (0, "")
    assert re.search(
        r" UTC \(age \d+ s, under 12 min 30 s: its answer may still come\) checked ", out
    ), out
    _refused_young(
        made,
        rrpid,
        capsys,
        r"was decided \d+ s ago \(\d{4}-.* UTC\), less than the 12 min 30 s a decision",
    )

    # --younger-ok: the preview shows it and warns, changing nothing; with --yes, settled.
    before = made.requests()
    code, out, err = run_bank(_settle(made, rrpid, "--younger-ok"), capsys)
    assert (code, err) == (0, ""), err
    assert re.search(
        r"^warning: decided less than 12 min 30 s ago \(age \d+ s\): --younger-ok settles it all"
        " the same, though the merchant's retry may still get its answer$",
        out,
        re.MULTILINE,
    ), out
    assert out.splitlines()[-1] == "nothing changed: run again with --yes to settle it"
    assert made.requests() == before
    code, out, err = run_bank(_settle(made, rrpid, "--younger-ok", "--yes"), capsys)
    assert (code, err) == (0, ""), err
    assert " settled by hand 20" in out and out.splitlines()[-1].startswith("settled by hand:")
    assert made.counted() == 0
    # Settled already is said as before, young or not.
    code, _, err = run_bank(_settle(made, rrpid, "--yes"), capsys)
    assert code == 1 and "was settled by hand already; nothing changed" in err, err


def test_a_decision_just_under_the_minimum_is_refused_one_over_it_settled(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    young = left_unanswered(made, age_ms=SETTLE_MIN_AGE_MS - 60_000)
    _refused_young(made, young, capsys, r"was decided 11 min( \d+ s)? ago")

    old = left_unanswered(made, age_ms=SETTLE_MIN_AGE_MS + 60_000)
    code, out, err = run_bank(made.bank("show-unanswered"), capsys)
    assert (code, err) == (0, "")
    (old_line,) = [line for line in out.splitlines() if line.startswith(old.hex())]
    assert re.search(r" UTC \(age 13 min( \d+ s)?\) checked ", old_line), old_line
    code, out, err = run_bank(_settle(made, old), capsys)  # the preview, no warning
    assert (code, err) == (0, "") and "warning: decided less than" not in out, out
    code, out, err = run_bank(_settle(made, old, "--yes"), capsys)
    assert (code, err) == (0, ""), err
    assert out.splitlines()[-1].startswith("settled by hand: the ledger records when and why")
    assert made.counted() == 1  # the young one, still awaiting its answer


def test_a_decision_dated_ahead_of_the_clock_is_taken_as_too_young(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clock set back since the decision: its age is negative, so unknown, never taken
    as old enough."""
    rrpid = left_unanswered(made, age_ms=0)
    aged(made, rrpid, -2 * SETTLE_MIN_AGE_MS)  # decided 25 minutes from now
    code, out, err = run_bank(made.bank("show-unanswered"), capsys)
    assert (code, err) == (0, "")
    assert re.search(
        r"\(age unknown: 2[45] min( \d+ s)? ahead of this host's clock, under 12 min 30 s: its"
        r" answer may still come\)",
        out,
    ), out
    _refused_young(
        made,
        rrpid,
        capsys,
        r"ahead of this host's clock \(the hosts' clocks differ, or one was set back since\):"
        r" its age",
    )
    code, out, err = run_bank(_settle(made, rrpid, "--younger-ok", "--yes"), capsys)
    assert (code, err) == (0, ""), err
    assert made.counted() == 0
