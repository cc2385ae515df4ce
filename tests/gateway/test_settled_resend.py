"""A merchant's resend of a request whose decision an operator settled by hand (``setpay
bank settle-unanswered``), through the real gateway, on a SQLite ledger and on a
PostgreSQL one.

The decision's answer can never be built (the merchant's certificate revoked since): each
resend was answered UNAVAILABLE, "cannot be built now", and ``setpay ca prune-gateway``
counted it. Settled, a resend is still UNAVAILABLE, never a SET refusal (which the
merchant would take as "nothing happened" and build afresh) and never an answer built
now, and the gateway's log says it was settled by hand; the pruning no longer counts it.
A resend whose checks still pass (within the freshness window) is not decided again nor
answered either.

Real parts: a served bank (``setpay init``'s, profile ec), the CA's revocation, the
commands through their own parser, and the merchant's request bytes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway import pruning_ledger
from gateway.config import load
from gateway.process import start_bank
from gateway.provisioning import init_bank
from hsm.software import SoftwareBackend
from setcore.encoding import thumbprint
from setcore.freshness import FRESHNESS_WINDOW_MS
from setpay.v1 import authorization_pb2, services_pb2_grpc
from tests.cli.command_support import run_bank
from tests.clocks import clocks_moved
from tests.gateway.ledger.ledger_support import PgCluster, throwaway_pg_cluster

from .actors import World, channels_for, decline_left_unanswered, register_merchant

REASON = "merchant revoked: settled with its acquirer, ticket 4711"


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """A served bank, its ledger the SQLite file ``setpay init`` made or a new PostgreSQL
    schema (``SETPAY_LEDGER``, for the bank and for the commands run beside it)."""
    directory = tmp_path / "bank"
    env: dict[str, str] = {}
    if request.param == "postgres":
        cluster: PgCluster = request.getfixturevalue("pg")
        env["SETPAY_LEDGER"] = cluster.ledger_url(f"settled_{os.urandom(4).hex()}")
        monkeypatch.setenv("SETPAY_LEDGER", env["SETPAY_LEDGER"])
    init_bank(directory, profile="ec", merchant_tls=True, env={})
    config = load(directory / "setpay.toml", env=env)
    assert config.ledger_url().startswith("postgresql:") == (request.param == "postgres")
    running = start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    gateway, ca = channels_for(directory, running.port, running.ca_port)
    made = World(
        directory, config, running,
        services_pb2_grpc.PaymentGatewayServiceStub(gateway),  # type: ignore[no-untyped-call]
        services_pb2_grpc.CertificateAuthorityServiceStub(ca),  # type: ignore[no-untyped-call]
        [gateway, ca], SoftwareBackend.ephemeral(), "ec",
    )  # fmt: skip
    yield made
    made.close()


def _bank(world: World, *argv: str) -> list[str]:
    return ["--config", str(world.directory / "setpay.toml"), *argv]


def _counted(world: World) -> int:
    """The decisions ``setpay ca prune-gateway`` counts as awaiting their answer."""
    shown = pruning_ledger.shown_ledger(world.config.ledger_url())
    return pruning_ledger.read_unanswered(world.config, shown, frozenset(), None).count


def _unavailable(world: World, request: authorization_pb2.AuthorizeRequest) -> str:
    """Resend ``request``: UNAVAILABLE (retry later), never a SET answer; its details."""
    with pytest.raises(grpc.RpcError) as failed:
        world.gateway.Authorize(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    return str(failed.value.details())


def _settle(world: World, capsys: pytest.CaptureFixture[str]) -> bytes:
    """``show-unanswered`` names the one decision awaiting its answer;
    ``settle-unanswered --yes`` settles it, with ``--younger-ok``: the decision is seconds
    old by the ledger's own clock (``clocks_moved`` moves the gateway's alone). Its
    RRPID."""
    code, out, err = run_bank(_bank(world, "show-unanswered"), capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == "1 decision(s) awaiting their answer"
    rrpid = out.split()[0]
    settle = ["settle-unanswered", "--rrpid", rrpid, "--reason", REASON, "--yes", "--younger-ok"]
    code, out, err = run_bank(_bank(world, *settle), capsys)
    assert code == 0, err
    return bytes.fromhex(rrpid)


def _still_settled(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """The decision is still there, settled, its answer never stored."""
    code, out, err = run_bank(_bank(world, "show-unanswered", "--settled"), capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == "1 decision(s) settled by hand"


def test_a_decision_settled_by_hand_is_answered_unavailable_and_no_longer_counted(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, no command settled it: each resend said "cannot be built now", and the
    pruning counted it for good."""
    merchant = register_merchant(world, "m-settled")
    request, _, _ = decline_left_unanswered(world, merchant, monkeypatch)
    # The merchant's own certificate revoked since: no answer can ever be built.
    world.running.authority.revoke(thumb=thumbprint(merchant.credentials.signature_cert))
    clocks_moved(monkeypatch, 2 * FRESHNESS_WINDOW_MS)
    caplog.set_level(logging.ERROR, logger="setpay.gateway")
    assert _unavailable(world, request) == "answer unavailable"
    assert "was decided but its answer cannot be built now" in caplog.text
    assert _counted(world) == 1

    rrpid = _settle(world, capsys)
    caplog.clear()
    for _ in range(2):
        assert _unavailable(world, request) == "answer unavailable"
    said = [r.getMessage() for r in caplog.records if rrpid.hex()[:8] in r.getMessage()]
    assert len(said) == 2 and all("an operator settled it by hand" in m for m in said), said
    assert "cannot be built now" not in caplog.text and REASON not in caplog.text
    assert _counted(world) == 0
    _still_settled(world, capsys)


def test_a_settled_decision_resent_while_fresh_is_neither_decided_nor_answered(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its checks still pass, so the ledger is asked to decide it: it refuses
    (DecisionSettled), and the merchant hears UNAVAILABLE, never an answer. Before, the
    gateway logged "database unavailable: StoreUnavailable" and told the merchant the
    database was unavailable: the log now says it was settled by hand."""
    merchant = register_merchant(world, "m-settled-fresh")
    request, _, cardholder = decline_left_unanswered(world, merchant, monkeypatch)
    rrpid = _settle(world, capsys)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="setpay.gateway")
    assert _unavailable(world, request) == "answer unavailable"
    said = [r.getMessage() for r in caplog.records if r.name == "setpay.gateway"]
    assert any(rrpid.hex()[:8] in m and "an operator settled it by hand" in m for m in said), said
    assert "database unavailable" not in caplog.text and REASON not in caplog.text
    _still_settled(world, capsys)
    assert world.running.ledger.card_account(cardholder.account_id).pending == 0
