"""``setpay demo``'s text: the parties' lines under each step, each party one of the story's,
in one column, no line told twice, and a successful run ending on its success line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from cli.story import Story, StoryHandler

# The parties the story speaks for: the SET roles, the bank around them, and the demo.
PARTIES = {"customer", "wallet", "merchant", "gateway", "CA", "bank", "issuer", "demo"}
# A party's line: its name right-aligned in a column eight wide, then what it said or saw.
_PARTY_LINE = re.compile(r" {5}(?P<party>[ A-Za-z]{8})(?:: | sees )\S")
_HEADING = re.compile(r"\[(?:[ 1][0-9]|--)\] \S")


def test_a_successful_story_names_only_its_parties_and_ends_on_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = [line for line in out.splitlines()[1:] if line]
    untidy = [
        line
        for line in lines[:-1]
        if not _HEADING.match(line)
        and not ((m := _PARTY_LINE.match(line)) and m["party"].strip() in PARTIES)
    ]
    assert untidy == []
    told_twice = {line for line in lines if lines.count(line) > 1}
    assert told_twice == set()
    # The bank's gateway port is told once (not again as the gateway's own line, nor as
    # a channel a client opened to it).
    port = re.search(r"gateway on port (\d+)", out)
    assert port is not None, out
    assert len([line for line in lines if re.search(rf"(?:port |:){port[1]}\b", line)]) == 1
    # Nothing after the last check but the verdict: the servers stop without a word.
    assert lines[-2].startswith("         demo: card ") and "in no merchant file" in lines[-2]
    assert lines[-1].startswith("[ok] Every outcome was as it must be: ")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.fixture
def passed_on() -> Iterator[list[logging.LogRecord]]:
    """The records that reach the root logger's handlers."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    keep = Keep()
    root.addHandler(keep)
    yield records
    root.removeHandler(keep)


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_the_plumbing_goes_to_the_ordinary_log_at_the_level_asked(
    passed_on: list[logging.LogRecord],
) -> None:
    story = Story(json_mode=True)
    handler = StoryHandler(story, logging.WARNING)
    for name, level, message in [
        ("setpay.clients.transport", logging.INFO, "CA channel to 127.0.0.1:1 over TLS"),
        ("setpay.server", logging.INFO, "health: SERVING"),
        ("setpay.server", logging.WARNING, "health probe failed: OSError"),
        ("setpay.merchant.gateway", logging.INFO, "gateway certificates: key exchange 1a2b"),
        ("setpay.merchant", logging.DEBUG, "a detail"),
        ("setpay.ledger", logging.INFO, "hold swept"),
        ("setpay.walletish", logging.WARNING, "not the wallet's"),
    ]:
        handler.handle(_record(name, level, message))
    assert story.events == [
        {"party": "merchant", "text": "gateway certificates: key exchange 1a2b"},
        {"party": "issuer", "text": "hold swept"},
    ]
    assert [r.getMessage() for r in passed_on] == [
        "health probe failed: OSError", "not the wallet's"
    ]  # fmt: skip
