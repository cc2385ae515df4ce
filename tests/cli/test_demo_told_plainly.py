"""What a first reader of ``setpay demo`` misread: a settlement answer's bare minor units
("answered CAP_CODE_SUCCESS, 3000 in batch B", beside "captures 30.00 EUR"), the rest of
the part-shipped order's authorization held on the card and never explained, and the
steps numbered up to [10] then headed "[--]" for the seven parts after them."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from cli.main import main


@pytest.fixture(scope="module")
def told(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The lines of one demo run's text (one run for the module: capsys is per test)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "--dir", str(tmp_path_factory.mktemp("demo-told") / "demo")]) == 0
    return out.getvalue().splitlines()


def test_a_settlement_answer_tells_its_amount_in_its_currency(told: list[str]) -> None:
    answers = [line for line in told if " answered " in line and "merchant: order " in line]
    assert len(answers) == 3, answers
    assert re.search(r"capture \w+ answered CAP_CODE_SUCCESS, 30\.00 EUR in batch ", answers[0])
    assert re.search(
        r"credit \w+ answered CAP_REV_OR_CRED_CODE_SUCCESS, 10\.00 EUR in ", answers[1]
    )
    assert answers[2].endswith("answered AUTH_REV_CODE_APPROVED, 0.00 EUR"), answers[2]


def test_the_rest_of_a_partly_captured_authorization_is_said_to_stay_held(
    told: list[str],
) -> None:
    captured = next(i for i, line in enumerate(told) if "answered CAP_CODE_SUCCESS" in line)
    assert told[captured + 1] == (
        "         demo: the other 12.50 EUR of the authorization stays held on the card until "
        "the merchant captures or reverses it, or the authorization expires"
    )
    assert "30.00 EUR captured (the other 12.50 EUR still held on the card)" in told[-1]


def test_every_heading_is_numbered_in_turn(told: list[str]) -> None:
    headings = [line[:4] for line in told if re.match(r"\[(?:[ \d]\d|--)\] ", line)]
    assert headings == [f"[{n:2d}]" for n in range(1, 18)], headings
