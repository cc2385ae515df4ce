"""Renewing the gateway's keys on a bank whose keys are on a SoftHSM token."""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import ca
from gateway import gateway_renewal
from gateway.bank_pki import GATEWAY_KEX_LABEL, GATEWAY_SIG_LABEL
from gateway.provisioning import GATEWAY_NAME
from setcore.authorization import open_auth_response
from setcore.encoding import thumbprint
from tests.hsm.testbed import SoftToken, session_softhsm

from .actors import auth_request, authorize, purchase, register_cardholder, register_merchant
from .renewal_support import key_versions
from .test_gateway_renewal import APPROVED, Served, certificate, refreshed


@pytest.fixture
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    made = session_softhsm(tmp_path_factory).init_token()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


@pytest.fixture(params=["ec", "rsa"])
def served(request: pytest.FixtureRequest, tmp_path: Path, token: SoftToken) -> Iterator[Served]:
    bank = Served(tmp_path / "bank", keys=token.uri(), profile=request.param)
    yield bank
    bank.stop()


def _gateway_rows(served: Served, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """``setpay ca list --all`` lines of the gateway's own certificates."""
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    config = str(served.directory / "setpay.toml")
    capsys.readouterr()
    assert ca.run(parser.parse_args(["ca", "list", "--config", config, "--all"])) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.endswith(GATEWAY_NAME)]


def test_a_renewal_on_the_token(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    world = served.world
    merchant = register_merchant(world, f"M-token-{served.profile}")
    cardholder = register_cardholder(world)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 1000))
    world, renewal = served.renew()

    assert {(GATEWAY_SIG_LABEL, 2), (GATEWAY_KEX_LABEL, 2)} <= key_versions(served.config())
    backend = world.running.pki.backend
    # The certificates sit beside their keys on the token, as init leaves them.
    for label in (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL):
        key = backend.get(label)
        assert key.version == 2
        assert backend.certificate(key) == certificate(served.directory, f"{label}.der")
    # Recorded in ca.db: `setpay ca list` shows old and new, all live.
    rows = _gateway_rows(served, capsys)
    assert len(rows) == 4 and all(" live " in row for row in rows)

    result = open_auth_response(
        world.gateway.Authorize(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == APPROVED
    assert result.gateway.thumbprint == renewal.signature.thumb
    fresh = refreshed(world, merchant)
    assert fresh.gateway_kex.thumbprint == renewal.key_exchange.thumb
    assert authorize(world, fresh, purchase(fresh, cardholder, 900)).auth_code == APPROVED


def test_a_renewal_failing_as_it_installs_is_taken_back(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = served.world
    merchant = register_merchant(world, f"M-token-fail-{served.profile}")
    cardholder = register_cardholder(world)
    served.stop()
    certs = served.directory / "certs"
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    versions = key_versions(served.config())
    renames: list[str] = []
    real_replace = os.replace

    def second_rename_fails(source: object, target: object) -> None:
        renames.append(str(target))
        if len(renames) == 2:  # the key exchange one is in place, the signature one not
            raise OSError("no space left on device")
        real_replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="no space left"):
        gateway_renewal.renew_gateway_keys(served.config())
    monkeypatch.undo()

    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before
    assert key_versions(served.config()) == versions
    # Recorded before the renames, so revoked rather than left live and unused.
    rows = _gateway_rows(served, capsys)
    assert sorted(" revoked " in row for row in rows) == [False, False, True, True]

    world = served.start()
    result = authorize(world, merchant, purchase(merchant, cardholder, 800))
    assert result.auth_code == APPROVED
    assert result.gateway.thumbprint == thumbprint(before["gateway-sig.der"])
