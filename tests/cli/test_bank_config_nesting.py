"""A bank's ``setpay.toml`` whose values nest past the TOML parser's depth is refused like
any other file that is no configuration: a message naming the file, exit 1, not the
parser's RecursionError and a traceback (``clients.config_file`` says so for a client's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import main

# Deeper than any recursion limit the parser could be given: it recurses once a level.
DEPTH = 100_000
ACCOUNT = "card-" + "a" * 24


@pytest.mark.parametrize(
    "argv",
    [
        ["bank", "--config", "{config}", "show-account", "--account", ACCOUNT],
        ["ca", "list", "--config", "{config}"],
    ],
)
@pytest.mark.parametrize("nested", ["[" * DEPTH + "]" * DEPTH, "{a = " * DEPTH + "1" + "}" * DEPTH])
def test_deeply_nested_config_is_refused(
    argv: list[str], nested: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "setpay.toml"
    config.write_text(f'[bank]\nprofile = "ec"\nx = {nested}\n')
    code = main.main([word.format(config=config) for word in argv])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert f"{config}: values nested too deeply to be a configuration" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["setpay.toml"]  # nothing made
