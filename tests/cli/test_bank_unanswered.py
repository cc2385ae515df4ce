"""``setpay bank show-unanswered`` and ``settle-unanswered``, on a bank's SQLite ledger and
on a PostgreSQL one.

A decision whose answer was never stored is listed (no PAN), settled by hand only with
``--yes`` (without, shown and nothing changed), and from then on listed as settled, no
longer counted by ``setpay ca prune-gateway`` (``gateway.pruning_ledger``), and never
answered by a retry; the settling moves no money. Every refusal exits 1 and changes
nothing: an RRPID that is not hex, an empty reason, an RRPID that is no decision awaiting
its answer (unknown, answered, fenced, settled already), a ledger at an older schema.
The decisions here are made old enough to settle (``unanswered_support.OLD_MS``); one
too young is refused unless the operator says so (``test_bank_unanswered_age``).

Real parts: ``init_bank``, the bank's ledger opened as the gateway opens it, the commands
through their own parser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.ledger import AnswerNotStored, Outcome, StoreUnavailable
from gateway.ledger.unanswered import MAX_LISTED
from tests.cards import AMEX, card
from tests.cli.command_support import run_bank
from tests.cli.unanswered_support import (
    LIMIT,
    REASON,
    Made,
    aged,
    ageless,
    authorization,
    blob,
    ledger_of,
    left_unanswered,
    made_bank,
    new_rrpid,
    sale,
)
from tests.gateway.ledger.ledger_support import (
    EUR,
    MERCHANT,
    PAN_A,
    PgCluster,
    throwaway_pg_cluster,
)
from tests.gateway.ledger.retention_support import unsigned


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgres"])
def made(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Made:
    """A new bank with a merchant and a card on a SQLite or a PostgreSQL ledger."""
    return made_bank(request, tmp_path, monkeypatch)


def test_a_decision_settled_by_hand_is_no_longer_counted_nor_answered(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, no command settled it: it held back prune-gateway for good."""
    rrpid = left_unanswered(made)
    code, out, err = run_bank(made.bank("show-unanswered"), capsys)
    assert (code, err) == (0, "")
    line, total = out.splitlines()
    assert line.startswith(f"{rrpid.hex()} sale merchant {MERCHANT} amount 9.00 (900 minor")
    assert f"units) currency {EUR} decided " in line and line.endswith(" UTC awaiting its answer")
    assert re.search(r" UTC \(age 13 min( \d+ s)?\) checked ", line), line
    assert re.search(r"checked \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", line)
    assert total == "1 decision(s) awaiting their answer"
    assert re.search(r"\d{13}", out.replace(rrpid.hex(), "")) is None  # no card number
    assert made.counted() == 1

    # Without --yes: shown, and nothing changed.
    before = made.requests()
    settle = made.bank("settle-unanswered", "--rrpid", rrpid.hex(), "--reason", REASON)
    code, out, err = run_bank(settle, capsys)
    assert (code, err) == (0, "")
    assert ageless(out.splitlines()[0]) == ageless(line)
    assert "would settle it by hand: the ledger records when and why" in out
    assert out.splitlines()[-2] == (
        "warning: every bank process sharing this ledger must run this release: a bank of"
        " an earlier release still serving would answer a settled decision at the"
        " merchant's next retry"
    )
    assert "this authorization's hold" not in out  # a sale: captured, nothing lapses
    assert out.splitlines()[-1] == "nothing changed: run again with --yes to settle it"
    assert made.requests() == before and made.counted() == 1

    code, out, err = run_bank([*settle, "--yes"], capsys)
    assert (code, err) == (0, ""), err
    shown, settled, said = (ageless(text) for text in out.splitlines())
    line = ageless(line)
    assert shown == line and settled.startswith(line.removesuffix(" awaiting its answer"))
    assert " settled by hand 20" in settled and settled.endswith(f" UTC: {REASON}")
    assert said.startswith("settled by hand: the ledger records when and why")
    assert "the settling moves no money: a capture or credit stands as posted" in out
    assert "money stays as decided" not in out
    code, out, err = run_bank(made.bank("show-unanswered"), capsys)
    assert out.splitlines() == [
        "no decision awaits its answer",
        "1 more settled by hand: --settled lists them",
    ]
    code, out, err = run_bank(made.bank("show-unanswered", "--settled"), capsys)
    assert f"UTC: {REASON}" in out.splitlines()[0]
    assert out.splitlines()[1:] == ["1 decision(s) settled by hand"]
    assert made.counted() == 0  # prune-gateway no longer held back by it

    answered: list[Outcome] = []

    def signing(outcome: Outcome) -> bytes:
        answered.append(outcome)
        return b"a rebuilt answer"

    with ledger_of(made.config) as ledger:
        with pytest.raises(StoreUnavailable, match="settled it by hand"):
            sale(ledger, rrpid, signing)
        assert answered == []
        assert ledger.find_card_account(PAN_A).available == LIMIT - 900  # nothing moved back


def _refusals(made: Made, capsys: pytest.CaptureFixture[str]) -> list[tuple[list[str], str]]:
    """Each command line refused, and what its error says."""
    awaiting = left_unanswered(made)
    settled = left_unanswered(made)
    with ledger_of(made.config) as ledger:
        answered = os.urandom(32)
        assert sale(ledger, answered, lambda outcome: b"signed") == b"signed"
        fenced = os.urandom(32)
        assert ledger.fence_stale(fenced, b"digest") is None
    code, _, err = run_bank(
        made.bank("settle-unanswered", "--rrpid", settled.hex(), "--reason", "r", "--yes"),
        capsys,
    )
    assert code == 0, err
    cases: list[tuple[list[str], str]] = [
        (["--rrpid", "zz" * 32, "--reason", REASON], "--rrpid is an RRPID in hex"),
        (["--rrpid", awaiting.hex()[:-1], "--reason", REASON], "--rrpid is an RRPID in hex"),
        (["--rrpid", "", "--reason", REASON], "(given: 0 characters)"),
        (["--rrpid", awaiting.hex(), "--reason", ""], "--reason: a reason is required"),
        (["--rrpid", awaiting.hex(), "--reason", "  "], "--reason: a reason is required"),
        (["--rrpid", os.urandom(32).hex(), "--reason", REASON], "the ledger holds no request"),
        (["--rrpid", answered.hex(), "--reason", REASON], "was answered: there is nothing"),
        (["--rrpid", fenced.hex(), "--reason", REASON], "refused as too old and fenced"),
        (["--rrpid", settled.hex(), "--reason", REASON], "was settled by hand already"),
    ]
    return cases


def test_every_refusal_exits_1_and_changes_nothing(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _refusals(made, capsys)
    before = made.requests()
    for argv, said in cases:
        for yes in ([], ["--yes"]):
            code, out, err = run_bank(made.bank("settle-unanswered", *argv, *yes), capsys)
            assert code == 1, (argv, yes, out)
            assert err.startswith("setpay bank: ") and said in err, (argv, err)
            assert err.rstrip().endswith("nothing changed"), err
            assert made.requests() == before
    assert made.counted() == 1  # the decision still awaiting its answer


def test_a_ledger_of_an_older_schema_is_refused_not_migrated(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Settled by this release on a ledger an older bank still serves, the decision would
    be answered at the next retry: the command reads only a migrated ledger, and
    migrates none (the bank does, as it starts)."""
    rrpid = left_unanswered(made)
    made.db.raw_execute("ALTER TABLE requests DROP COLUMN settled_reason")
    made.db.raw_execute("ALTER TABLE requests DROP COLUMN settled_at_ms")
    made.db.raw_execute("UPDATE schema_version SET version = 7")
    before = made.requests()
    for argv in (
        ["settle-unanswered", "--rrpid", rrpid.hex(), "--reason", REASON, "--yes"],
        ["show-unanswered"],
    ):
        code, out, err = run_bank(made.bank(*argv), capsys)
        assert (code, out) == (1, ""), out
        assert "schema version 7" in err and "nothing was changed" in err, err
    assert made.db.raw_query("SELECT version FROM schema_version") == [(7,)]
    assert made.requests() == before


def test_an_authorization_shows_its_hold_lapsing_and_settling_does_not_keep_it(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, the preview said "the money stays as decided": an authorization's hold
    lapses at its expiry, the sweeper gives the money back, and the merchant, never
    answered, can never capture it. Its hold's state and expiry are shown, no PAN."""
    rrpid = os.urandom(32)
    with ledger_of(made.config) as ledger, pytest.raises(AnswerNotStored):
        authorization(ledger, rrpid, unsigned)
    aged(made, rrpid)
    ((expires_at_ms,),) = made.db.raw_query("SELECT expires_at_ms FROM holds")  # its one hold
    assert isinstance(expires_at_ms, int)
    lapses = datetime.fromtimestamp(expires_at_ms / 1000, tz=UTC)
    when = f"{lapses:%Y-%m-%d %H:%M:%S} UTC"
    code, out, err = run_bank(made.bank("show-unanswered"), capsys)
    assert (code, err) == (0, "")
    line = out.splitlines()[0]
    assert line.startswith(f"{rrpid.hex()} authorization merchant {MERCHANT} amount 9.00")
    assert f" hold 9.00 pending, lapses {when} awaiting its answer" in line, line
    assert re.search(r"\d{13}", out.replace(rrpid.hex(), "")) is None  # no card number

    settle = made.bank("settle-unanswered", "--rrpid", rrpid.hex(), "--reason", REASON)
    before = made.requests()
    code, out, err = run_bank(settle, capsys)
    assert (code, err) == (0, "")
    assert ageless(out.splitlines()[0]) == ageless(line)
    assert (
        f"this authorization's hold is not captured by the settling: it lapses {when}, when"
        " the money goes back to the card, and the merchant, never answered, holds no"
        " capture token and can never capture it"
    ) in out.splitlines()
    assert "warning: every bank process sharing this ledger must run this release" in out
    assert made.requests() == before

    # Its expiry passed (the sweeper not yet run): shown lapsed, in the listing and the
    # preview alike.
    made.db.raw_execute("UPDATE holds SET expires_at_ms = 1000")
    code, out, err = run_bank(settle, capsys)
    assert (code, err) == (0, "")
    assert " hold lapsed 1970-01-01 00:00:01 UTC: released to the card awaiting" in out
    assert (
        "this authorization's hold lapsed 1970-01-01 00:00:01 UTC: its money went back to"
        " the card, and the merchant never captured it"
    ) in out.splitlines()
    code, out, err = run_bank([*settle, "--yes"], capsys)
    assert code == 0, err
    assert " hold lapsed 1970-01-01 00:00:01 UTC: released to the card settled by hand" in out


def test_show_unanswered_says_when_it_is_cut_and_lists_settled_decisions_apart(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, a listing cut at MAX_LISTED said "1000 decision(s)" as if that were all,
    and settled decisions, oldest first, could push every unsettled one off it."""
    settled = left_unanswered(made)
    code, _, err = run_bank(
        made.bank("settle-unanswered", "--rrpid", settled.hex(), "--reason", REASON, "--yes"),
        capsys,
    )
    assert code == 0, err
    left_unanswered(made)
    # Copies of the unsettled decision under other RRPIDs, decided at the same moment:
    # 1,024 of them in all (the ledger's own reads of them are not what is tested).
    for _ in range(10):
        made.db.raw_execute(
            "INSERT INTO requests (rrpid, request_digest, response, outcome, created_at_ms,"
            f" checked_at_ms) SELECT {new_rrpid(made)}, request_digest, response, outcome,"
            " created_at_ms, checked_at_ms FROM requests"
            " WHERE outcome IS NOT NULL AND settled_at_ms IS NULL"
        )
    code, out, err = run_bank(made.bank("show-unanswered"), capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == MAX_LISTED + 2
    assert all(line.endswith(" UTC awaiting its answer") for line in lines[:MAX_LISTED])
    assert settled.hex() not in out  # listed apart
    assert lines[MAX_LISTED:] == [
        f"the {MAX_LISTED} oldest shown, of 1024 decision(s) awaiting their answer: answer or"
        " settle these, then list again",
        "1 more settled by hand: --settled lists them",
    ]


def test_settled_decisions_kept_for_good_never_fill_the_listing(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, decisions settled by hand, kept for good, were listed with the others as
    "awaiting their answer": once more than MAX_LISTED had been settled over the bank's
    life, every listing was cut for good, its one unsettled decision shown after them
    all or not at all, and its advice ("answer or settle these") could not be followed."""
    first = left_unanswered(made)
    code, _, err = run_bank(
        made.bank("settle-unanswered", "--rrpid", first.hex(), "--reason", REASON, "--yes"),
        capsys,
    )
    assert code == 0, err
    for _ in range(10):  # 1,024 settled by hand in all
        made.db.raw_execute(
            "INSERT INTO requests (rrpid, request_digest, response, outcome, created_at_ms,"
            f" checked_at_ms, settled_at_ms, settled_reason) SELECT {new_rrpid(made)},"
            " request_digest, response, outcome, created_at_ms, checked_at_ms, settled_at_ms,"
            " settled_reason FROM requests WHERE settled_at_ms IS NOT NULL"
        )
    latest = left_unanswered(made)  # settled a day after the others
    code, _, err = run_bank(
        made.bank("settle-unanswered", "--rrpid", latest.hex(), "--reason", REASON, "--yes"),
        capsys,
    )
    assert code == 0, err
    made.db.raw_execute(
        "UPDATE requests SET settled_at_ms = settled_at_ms + 86400000"
        f" WHERE rrpid = {blob(made, latest)}"
    )
    awaiting = left_unanswered(made)

    code, out, err = run_bank(made.bank("show-unanswered"), capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(awaiting.hex()) and lines[0].endswith(" awaiting its answer")
    assert lines[1:] == [
        "1 decision(s) awaiting their answer",
        "1025 more settled by hand: --settled lists them",
    ]

    code, out, err = run_bank(made.bank("show-unanswered", "--settled"), capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == MAX_LISTED + 2
    assert lines[0].startswith(latest.hex())  # the most recently settled first
    assert all(f" UTC: {REASON}" in line for line in lines[:MAX_LISTED])
    assert awaiting.hex() not in out
    assert lines[MAX_LISTED:] == [
        f"the {MAX_LISTED} settled most recently shown, of 1025 decision(s) settled by hand",
        "1 more awaiting their answer: show-unanswered without --settled lists them",
    ]


def test_an_empty_ledger_lists_nothing_of_either_sort(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_bank(made.bank("show-unanswered"), capsys) == (
        0, "no decision awaits its answer\n", "",
    )  # fmt: skip
    assert run_bank(made.bank("show-unanswered", "--settled"), capsys) == (
        0, "no decision was settled by hand\n", "",
    )  # fmt: skip


def test_a_reason_holding_a_card_number_by_any_separator_or_unencodable_is_refused(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, a card number typed with dots, slashes, commas, underscores, double or
    zero-width spaces was kept and shown, and a lone surrogate failed in the store."""
    rrpid = left_unanswered(made)
    number = card("411111", 3)
    groups = [number[i : i + 4] for i in range(0, 16, 4)]
    before = made.requests()
    for reason, said in [
        *(
            (f"card {sep.join(groups)} disputed", "no run of 13 or more digits")
            for sep in (".", "/", ",", "_", "  ", "\u200b", " - ")
        ),
        ("merchant closed \udcff", "no lone surrogate (given: U+DCFF at character 17)"),
    ]:
        argv = made.bank("settle-unanswered", "--rrpid", rrpid.hex(), "--reason", reason, "--yes")
        code, out, err = run_bank(argv, capsys)
        assert code == 1, (ascii(reason), out)
        assert err.startswith("setpay bank: --reason: ") and said in err, err
        assert err.rstrip().endswith("; nothing changed"), err
        assert groups[1] not in err and out == ""
    assert made.requests() == before


@pytest.mark.parametrize("made", ["sqlite"], indirect=True)
def test_a_card_number_glued_to_digits_or_split_by_lone_letters_is_refused(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, each of these was kept in ``settled_reason`` and listed whole by
    ``show-unanswered --settled``: a card number with its security code or expiry glued
    on, or a digit before it (one group searched only whole), its groups split by a lone
    letter that looks like a dash or a bar, its zeros written as the ideographic zero."""
    rrpid = left_unanswered(made)
    number = card("411111", 3)
    groups = [number[i : i + 4] for i in range(0, 16, 4)]
    before = made.requests()
    reasons = {
        "security code glued on": f"customer read {number}123 on the phone",
        "expiry glued on": f"see {AMEX}1227",
        "a digit before": f"ref 7{number}",
        **{f"U+{ord(c):04X} between": "card " + c.join(groups) for c in "\u1428\u01c0\u3161"},
        "ideographic zeros": f"amex {AMEX.replace('0', chr(0x3007))}",
    }
    for name, reason in reasons.items():
        argv = made.bank("settle-unanswered", "--rrpid", rrpid.hex(), "--reason", reason, "--yes")
        code, out, err = run_bank(argv, capsys)
        assert code == 1, name  # the reason itself never shown: it holds a card number
        assert err.startswith("setpay bank: --reason: ") and "no run of 13 or more" in err, err
        assert not re.search(r"\d{3}", err) and out == ""
    assert made.requests() == before
    code, listed, _ = run_bank(made.bank("show-unanswered", "--settled"), capsys)
    assert (code, listed.splitlines()[0]) == (0, "no decision was settled by hand")


def test_a_card_number_typed_as_the_rrpid_is_not_repeated(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """A card number's digits are hex too: typed into ``--rrpid`` by mistake, it names no
    request, and the refusal shows it masked as the ledger masks any id it was given."""
    number = card("411111", 987654)
    before = made.requests()
    code, out, err = run_bank(
        made.bank("settle-unanswered", "--rrpid", number, "--reason", REASON), capsys
    )
    assert code == 1, out
    assert "the ledger holds no request" in err and "nothing changed" in err, err
    assert number not in out + err
    assert number[6:12] not in out + err  # the middle digits masked
    assert made.requests() == before
