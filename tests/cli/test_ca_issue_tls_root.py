"""``setpay ca issue-tls`` never leaves a ``root.pem`` beside the credentials it writes that
is not the bank's transport root: the peer given the files trusts it. ``--name root``
wrote the new certificate as root.pem, and a root.pem of another bank (an earlier issue
into the same directory) was kept without a word; both are refused, nothing written."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from cli import ca
from gateway.provisioning import InitResult, init_bank


def _ca(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    code = ca.run(parser.parse_args(["ca", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("ca-tls-root") / "bank", env={})


def _issue(
    made: InitResult, role: str, name: str, out: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    return _ca(
        ["issue-tls", "--config", str(made.config_path), "--role", role, "--name", name,
         "--out", str(out)],
        capsys,
    )  # fmt: skip


def _verifies(root: Path, chain: Path) -> bool:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is required for these tests (Debian package: openssl)")
    done = subprocess.run(
        [openssl, "verify", "-CAfile", str(root), "-untrusted", str(chain), str(chain)],
        text=True, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    return done.stdout.strip().endswith(": OK")


@pytest.mark.parametrize(("role", "name"), [("client", "root"), ("server", "ROOT")])
def test_a_name_that_would_write_root_pem_is_refused(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], role: str, name: str
) -> None:
    out = tmp_path / "out"
    code, said, err = _issue(made, role, name, out, capsys)
    assert (code, said) == (1, "")
    assert f"the name {name!r} would write its certificate as {out / 'root.pem'}" in err
    assert not out.exists() or not list(out.iterdir())


def test_another_banks_root_pem_is_refused_and_nothing_written(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = init_bank(tmp_path / "other", brand_id="other", env={})
    out = tmp_path / "out"
    assert _issue(other, "client", "shop-old", out, capsys)[0] == 0
    stale = (out / "root.pem").read_bytes()
    code, said, err = _issue(made, "client", "shop-7", out, capsys)
    assert (code, said) == (1, "")
    assert f"{out / 'root.pem'} is not this bank's transport root: nothing written" in err
    assert (out / "root.pem").read_bytes() == stale
    assert not (out / "shop-7.pem").exists() and not (out / "shop-7.key").exists()


def test_the_banks_own_root_pem_is_kept_and_chains(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The usual case: several peers' credentials issued into one directory."""
    out = tmp_path / "out"
    assert _issue(made, "client", "shop-1", out, capsys)[0] == 0
    code, _, err = _issue(made, "server", "shop-2.example", out, capsys)
    assert (code, err) == (0, "")
    for name in ("shop-1", "shop-2.example"):
        assert _verifies(out / "root.pem", out / f"{name}.pem")
