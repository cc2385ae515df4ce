"""What a new user meets first, followed literally: the README's walk-through leaves its
card file and passphrase files where git does not look, and the operations guide shows
every line ``setpay init`` prints (its outputs are said to be copied from real runs)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from cli import init
from hsm.uri import PASSPHRASE_ENV

from .test_operations_commands import OPERATIONS
from .test_readme import README, ROOT, fenced_blocks


def _ignored_directories() -> set[str]:
    """The directories ``.gitignore`` ignores wherever they are (``NAME/`` patterns)."""
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return {line[:-1] for line in lines if re.fullmatch(r"[A-Za-z0-9._-]+/", line)}


def test_the_walk_through_works_in_a_directory_git_ignores() -> None:
    """``card.json`` holds the card's number and expiry, each ``keys.pass`` opens a party's
    keys: written into the clone itself they sit among the sources, one ``git add -A``
    from a commit. So the walk-through moves into an ignored directory before any command
    that writes a file."""
    walk = [line.split("#")[0].strip() for line in fenced_blocks(README, "sh")[1].splitlines()]
    first_cd = next((i for i, line in enumerate(walk) if re.search(r"(^|&&\s*)cd\s", line)), None)
    first_write = next(i for i, line in enumerate(walk) if line.startswith("setpay init"))
    assert first_cd is not None, "the walk-through works in the clone itself"
    assert first_cd < first_write
    words = shlex.split(walk[first_cd])
    target = words[words.index("cd") + 1]
    assert not Path(target).is_absolute() and ".." not in Path(target).parts
    assert Path(target).parts[0] in _ignored_directories(), target


def _line_kind(line: str) -> tuple[str, ...]:
    """A printed line without the values of one run (paths, fingerprints, dates)."""
    return tuple(word for word in line.split()[:2] if "/" not in word and ":" not in word)


def _guide_init_output() -> list[str]:
    """The output under the guide's first ``# setpay init`` prompt."""
    for block in fenced_blocks(OPERATIONS, "console"):
        lines = block.splitlines()
        if lines and lines[0].startswith("# setpay init "):
            return [line for line in lines[1:] if not line.startswith("# ")]
    raise AssertionError("the guide shows no `setpay init` run")


def test_the_guide_shows_every_line_init_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's bank names its keys with ``--keys``, so init prints no passphrase-file
    notice; here the keystore's passphrase comes from the environment, for the same lines."""
    monkeypatch.setenv(PASSPHRASE_ENV, "first-steps-passphrase")
    parser = argparse.ArgumentParser(prog="setpay")
    init.add_parser(parser.add_subparsers(dest="command", required=True))
    assert init.run(parser.parse_args(["init", str(tmp_path / "bank")])) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [_line_kind(line) for line in _guide_init_output()] == [
        _line_kind(line) for line in printed
    ]
