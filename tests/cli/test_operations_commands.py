"""docs/OPERATIONS.md's ``setpay`` commands are ones setpay's parser accepts as written.

Checked, each parsed and naming the bank it acts on: every command of its shell blocks,
and every command typed at a console block's prompt (its other lines are output); and,
in the prose, every ``setpay`` code span given as a command to run: one that sets an
option to a value. A span that only names a
command or an option (``setpay ca list --all``, ``setpay keys delete``) or elides part of
it (``...``) is a reference, not checked; so is each of ``_SHORTHANDS``, for the reason
it gives.
"""

from __future__ import annotations

import re
import shlex

import pytest

from cli.main import build_parser

from .test_readme import ROOT, fenced_blocks, setpay_commands

OPERATIONS = (ROOT / "docs" / "OPERATIONS.md").read_text()
# A console block's prompt (root's, as the guide runs as root; or a user's).
_PROMPTS = ("# ", "$ ")
# Placeholders the guide writes for a value its prose explains, where the parser wants a
# value of a form: each stands for an example of that form.
_PLACEHOLDERS = {"N": "2", "OP": "0a1b2c3d", "PORT": "9464", "THUMB": "ab" * 32}
# A code span that sets an option to a value: a command to run, not a name.
_SETS_AN_OPTION = re.compile(r"(?:^|\s)--[a-z][a-z-]*\s+[^\s-]")
_SPAN = re.compile(r"`(setpay [^`]+)`")
# Code spans that set an option yet are not commands to run as written, each with why.
_SHORTHANDS = {
    "setpay gateway serve --workers N": "introduces the option; the guide's serve command,"
    " with --config, is in section 6.1",
}


def _block_commands() -> list[list[str]]:
    lines = [line for block in fenced_blocks(OPERATIONS, "sh") for line in block.splitlines()]
    for block in fenced_blocks(OPERATIONS, "console"):
        lines += [line[2:] for line in block.splitlines() if line.startswith(_PROMPTS)]
    return setpay_commands(lines)


def _prose_commands() -> list[tuple[int, list[str]]]:
    """(line, arguments) of each code span given as a command; a span may wrap lines."""
    found = []
    for span in _SPAN.finditer(OPERATIONS):
        text = " ".join(span[1].split())
        if _SETS_AN_OPTION.search(text) and "..." not in text and text not in _SHORTHANDS:
            line = OPERATIONS.count("\n", 0, span.start()) + 1
            found.append((line, shlex.split(text)[1:]))
    return found


def _parse(argv: list[str]) -> None:
    words = [_PLACEHOLDERS.get(word, word) for word in argv]
    args = build_parser().parse_args(words)
    # The guide's commands run from anywhere, so each names the bank it acts on: ``setpay
    # bank`` would read setpay.toml in the working directory (another bank, or none), and
    # ``setpay keys delete`` refuses to run without --config or --keys.
    if hasattr(args, "config"):
        assert {"--config", "--keys"} & set(words), "names no bank: add --config (or --keys)"


def test_the_guide_has_commands_of_both_kinds() -> None:
    """A change to the guide's forms (a fence, a prompt) must not leave these tests empty."""
    assert len(_block_commands()) >= 10
    assert len(_prose_commands()) >= 5


@pytest.mark.parametrize("argv", _block_commands(), ids=" ".join)
def test_each_block_command_parses(argv: list[str]) -> None:
    _parse(argv)


@pytest.mark.parametrize(
    "argv", [argv for _, argv in _prose_commands()],
    ids=[f"line {line}: {' '.join(argv)}" for line, argv in _prose_commands()],
)  # fmt: skip
def test_each_command_in_the_prose_parses(argv: list[str]) -> None:
    _parse(argv)
