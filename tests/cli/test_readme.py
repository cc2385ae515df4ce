"""The README's commands and configuration examples are ones setpay accepts as written."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path

import pytest

from cli.main import build_parser
from clients.merchant.config import load as load_merchant
from clients.wallet.config import load as load_wallet
from clients.wallet.vault import PASSPHRASE_ENV as CARD_PASSPHRASE_ENV
from hsm.uri import PASSPHRASE_ENV as KEYSTORE_PASSPHRASE_ENV

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Makefile targets that are not tasks of their own: ``all`` is ``make test`` by another name.
_NOT_TASKS = {"all"}


# Where a command's words end: a redirection, a pipe, the next command.
_COMMAND_ENDS = {">", "|", "&&", ";"}
# A shell variable set for the one command: ``NAME=VALUE setpay ...``.
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of ``text``'s fenced code blocks of ``language``."""
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _blocks(language: str) -> list[str]:
    return fenced_blocks(README, language)


def setpay_commands(lines: Iterable[str]) -> list[list[str]]:
    """The arguments of every ``setpay`` command in these shell lines (continuations
    joined), without comment, redirection or pipe: the command may follow variables set
    for it or ``docker exec CONTAINER``, or be one quoted word (``--health-cmd``)."""
    commands = []
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        ends = [i for i, word in enumerate(words) if word in _COMMAND_ENDS]
        words = words[: ends[0]] if ends else words
        commands += [shlex.split(w)[1:] for w in words if w.startswith("setpay ")]
        while words and _ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words[:2] == ["docker", "exec"]:
            words = words[3:]
        if words[:1] == ["setpay"]:
            commands.append(words[1:])
    return commands


def _setpay_commands() -> list[list[str]]:
    """Every ``setpay`` command of the README's shell blocks."""
    return setpay_commands(line for block in _blocks("sh") for line in block.splitlines())


def test_the_readme_opens_with_make_demo_and_make_test() -> None:
    first = _blocks("sh")[0]
    assert README.startswith("# setpay\n\n```sh\n")
    assert [shlex.split(line, comments=True) for line in first.splitlines()] == [
        ["make", "demo"], ["make", "test"]
    ]  # fmt: skip


def test_the_readme_shows_every_task_of_the_makefile() -> None:
    """STYLE.md: one front door for every task, and the README shows it."""
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert phony is not None
    tasks = set(phony[1].split()) - _NOT_TASKS
    shown = {
        words[1]
        for block in _blocks("sh")
        for words in (shlex.split(line, comments=True) for line in block.splitlines())
        if words[:1] == ["make"] and len(words) > 1
    }
    assert sorted(tasks - shown) == []


@pytest.mark.parametrize("argv", _setpay_commands(), ids=" ".join)
def test_each_setpay_command_parses(argv: list[str]) -> None:
    build_parser().parse_args(argv)


def test_first_registrations_pin_the_brand_root() -> None:
    """A new merchant or wallet directory has no pinned root: register needs --root."""
    registers = [argv for argv in _setpay_commands() if "register" in argv]
    assert {argv[0] for argv in registers} == {"merchant", "wallet"}
    for argv in registers:
        assert "--root" in argv, " ".join(argv)


def test_the_configuration_examples_load(tmp_path: Path) -> None:
    merchant_toml, wallet_toml = _blocks("toml")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "merchant.toml").write_text(merchant_toml)
    assert load_merchant(tmp_path / "shop", env={}).merchant_id == "demo-shop"
    (tmp_path / "wallet").mkdir()
    (tmp_path / "wallet" / "wallet.toml").write_text(wallet_toml)
    wallet = load_wallet(tmp_path / "wallet", env={})
    assert wallet.keys == "soft:keys;pin-source=file:keys.pass"
    assert wallet.passphrase_file is not None and wallet.passphrase_file.name == "card.pass"


def test_the_passphrases_the_wallet_reads_are_documented(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """soft:keys without a pin-source reads the keystore's passphrase from the environment."""
    for name in (KEYSTORE_PASSPHRASE_ENV, CARD_PASSPHRASE_ENV):
        assert name in README
    with pytest.raises(SystemExit):
        build_parser().parse_args(["wallet", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert KEYSTORE_PASSPHRASE_ENV in shown and CARD_PASSPHRASE_ENV in shown


def test_each_table_row_has_the_cells_of_its_header() -> None:
    """GitHub splits a table row at every unescaped ``|``, inside backticks too."""
    for table in re.findall(r"(?:^\|.*\|\n)+", README, re.M):
        rows = [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in table.splitlines()]
        widths = {len(row) for row in rows}
        assert len(widths) == 1, [" | ".join(row) for row in rows if len(row) != len(rows[0])]


def test_the_walk_through_runs_on_what_make_installs() -> None:
    """It starts where `make demo` leaves a reader (setpay in the venv, not on PATH), needs
    no program `make demo` does not bring (it makes the venv only; openssl comes with
    `make test`'s system packages, so passphrases are made with coreutils' head and
    base64), and puts no passphrase in the environment or the shell's history: each is a
    file only its owner reads, as OPERATIONS does."""
    walk = _blocks("sh")[1].splitlines()
    assert walk[0].split("#")[0].split() == [".", ".venv/bin/activate"]
    assert not [line for line in walk if re.search(r"\bopenssl\b|\bexport\b", line)]
    secrets = [line for line in walk if ".pass" in line.split("#")[0] and "base64 >" in line]
    assert [line.startswith("(umask 077; ") for line in secrets] == [True, True]
