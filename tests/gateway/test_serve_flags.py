"""``setpay gateway serve``'s numeric flags refuse a value without repeating one that
could be a card number typed into the wrong option (``cli.number_options.shown``), and
keep their strict reading (digits 0-9 only)."""

from __future__ import annotations

import pytest

from cli.main import build_parser

# Built here, not written out: a card-number-long run of digits, in groups of four as a
# card is printed. No number at all, so each flag refuses it.
CARD_LIKE = "-".join(["9876"] * 4)


def _refusal(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """The usage error ``gateway serve FLAGS`` exits 2 with."""
    with pytest.raises(SystemExit) as exited:
        build_parser(wired=("gateway",)).parse_args(["gateway", "serve", *flags])
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--workers", "--metrics-port"])
def test_a_card_number_typed_into_a_number_flag_is_not_repeated(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """Before, the refusal quoted the text given, card number and all."""
    err = _refusal(capsys, flag, CARD_LIKE)
    assert "9876" not in err
    assert f"the {len(CARD_LIKE)} characters given (not repeated)" in err


@pytest.mark.parametrize(
    ("flag", "text", "said"),
    [
        ("--workers", "two", "--workers: must be a number in digits 0-9, not 'two'"),
        ("--workers", "+2", "not '+2'"),  # still strict: no sign, spaces or other scripts
        ("--workers", "\uff12", "not '\uff12'"),
        ("--metrics-port", "anywhere", "must be a port number or any, not 'anywhere'"),
    ],
)
def test_a_short_bad_value_is_still_quoted(
    capsys: pytest.CaptureFixture[str], flag: str, text: str, said: str
) -> None:
    assert said in _refusal(capsys, flag, text)


def test_good_values_are_read() -> None:
    args = build_parser(wired=("gateway",)).parse_args(
        ["gateway", "serve", "--workers", "2", "--metrics-port", "any"]
    )
    assert (args.workers, args.metrics_port) == (2, "any")
