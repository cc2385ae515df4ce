"""``setpay demo --dir D --keys TOKEN`` keeps the keys it made on the token, so the next
demo on that token meets a bank's keys, which ``setpay init`` refuses. The refusal says
how to go on, with commands that work as given."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cli.demo_parts import refusing_a_used_key_backend
from cli.main import main
from gateway.bank_errors import BankExists, ProvisioningError
from gateway.bank_pki import ALL_LABELS
from tests.cli.demo_support import assert_no_key_left, token_for_a_demo_here


def test_a_token_a_kept_demo_left_keys_on_is_refused_with_the_way_out(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    token = token_for_a_demo_here(tmp_path, tmp_path_factory, monkeypatch)
    assert main(["demo", "--dir", str(tmp_path / "kept"), "--keys", token.uri(), "--json"]) == 0
    capsys.readouterr()

    assert main(["demo", "--keys", token.uri(), "--json"]) == 1
    err = capsys.readouterr().err
    assert "already holds a key labelled" in err and "a `setpay demo --dir` run keeps" in err
    advised = [line.strip() for line in err.splitlines() if "setpay keys delete" in line]
    assert sorted(shlex.split(line)[shlex.split(line).index("--label") + 1]
                  for line in advised) == sorted(ALL_LABELS)  # fmt: skip
    # Nothing of the refused run is left, and the kept run's keys are still there.
    assert list(tmp_path.glob("setpay-demo-*")) == []
    with pytest.raises(AssertionError):
        assert_no_key_left(token)

    # The commands it gives, run as given, clear the token.
    for line in advised:
        assert main(shlex.split(line)[1:]) == 0, line
    capsys.readouterr()
    assert_no_key_left(token)


def test_only_a_backend_named_with_keys_gets_the_advice() -> None:
    """Without --keys the bank's keys go into the run's new keystore, which a refusal
    cannot be about: it is said as it was. Any other failure passes untouched."""
    refused = BankExists("the key backend already holds a key labelled 'cca'")
    with pytest.raises(BankExists) as caught, refusing_a_used_key_backend(None):
        raise refused
    assert caught.value is refused
    with pytest.raises(ProvisioningError) as other, refusing_a_used_key_backend("soft:x"):
        raise ProvisioningError("something else")
    assert str(other.value) == "something else"
