"""``setpay ca prune-gateway`` while the ledger holds a decision whose answer was never
stored, on a bank's SQLite ledger and on a PostgreSQL one.

Such a request (the gateway failed between the ledger's decision and storing its answer)
is answered at the merchant's retry from the same bytes, opened with the key-exchange key
they are sealed to, revoked since or not (``gateway.servicer``). Deleted by the pruning,
that key opens them nowhere, and the retry is answered UNAVAILABLE for good while the
money has moved. The ledger does not record which certificate a request was sealed to,
so while any decision awaits its answer the pruning deletes no key-exchange key or kept
certificate: ``--yes`` is refused (exit 1, nothing deleted), the dry run says so; once
the decision is answered the same pruning goes ahead. A pruning of signature keys alone
is not held back, and a ledger that cannot be read refuses one of key-exchange keys.

Real parts: ``init_bank``, ``renew-gateway``, ``revoke`` and ``prune-gateway`` through the
CLI, the bank's own ledger opened as the gateway opens it, and a decision made by the
ledger's authorization whose answer fails as a failing token's does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import pruning_ledger
from gateway.bank_pki import GATEWAY_KEX_LABEL, GATEWAY_SIG_LABEL, bank_keys_uri
from gateway.config import load
from gateway.issuer import open_ledger
from gateway.ledger import AnswerNotStored, Ledger, Outcome
from gateway.provisioning import InitResult, init_bank
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from tests.cli.test_ca_prune import _ca
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PgCluster,
    throwaway_pg_cluster,
)
from tests.gateway.renewal_support import key_versions
from tests.ports import free_port

REFUSED = "setpay ca prune-gateway: the ledger ({}) holds 1 decided request whose answer was"
SECTION = 'OPERATIONS "A token that fails between a decision and its answer"'


@dataclass(frozen=True)
class Renewed:
    """A bank made by ``init_bank``, renewed once, on one ledger store."""

    made: InitResult
    store: str

    @property
    def config(self) -> str:
        return str(self.made.config_path)

    @property
    def kept(self) -> Path:
        return self.made.directory / "certs" / "gateway-kex.v1.der"

    @property
    def ledger(self) -> str:
        """The ledger as the pruning names it: the bank's own, password left out."""
        return pruning_ledger.shown_ledger(load(self.made.config_path).ledger_url())

    @property
    def ledger_line(self) -> str:
        """What the pruning says on standard error of the ledger it read."""
        source = "ledger.store" if self.store == "sqlite" else "SETPAY_LEDGER"
        return f"ledger read ({source}): {self.ledger}\n"

    def versions(self) -> set[tuple[str, int]]:
        renewed = (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL)
        return {(lb, v) for lb, v in key_versions(load(self.made.config_path)) if lb in renewed}


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as cluster:
        yield cluster


def _new_schema(request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty schema of the module's PostgreSQL cluster."""
    cluster: PgCluster = request.getfixturevalue("pg")
    return cluster.ledger_url(f"prune_{os.urandom(4).hex()}")


def _renewed(
    store: str,
    request: pytest.FixtureRequest,
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Renewed:
    """A stopped bank (free ports, never bound), its ledger the SQLite file ``init_bank``
    made or a new PostgreSQL schema (``SETPAY_LEDGER``, as the bank's commands get it),
    with a merchant and a card, renewed once."""
    monkeypatch.setenv("SETPAY_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("SETPAY_CA_LISTEN", f"127.0.0.1:{free_port()}")
    if store == "postgres":
        monkeypatch.setenv("SETPAY_LEDGER", _new_schema(request))
    made = init_bank(directory, env={})
    with _ledger(made) as ledger:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, 100_000, EUR)
    code, _, err = _ca(["renew-gateway", "--config", str(made.config_path)], capsys)
    assert code == 0, err
    return Renewed(made, store)


@pytest.fixture(params=["sqlite", "postgres"])
def renewed(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Renewed:
    return _renewed(request.param, request, tmp_path / "bank", monkeypatch, capsys)


@pytest.fixture
def renewed_sqlite(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Renewed:
    """A stopped bank on the SQLite ledger ``init_bank`` made, renewed once."""
    return _renewed("sqlite", request, tmp_path / "bank", monkeypatch, capsys)


def _ledger(made: InitResult) -> contextlib.closing[Ledger]:
    """The bank's ledger, opened as the gateway opens it, closed on leaving."""
    return contextlib.closing(open_ledger(load(made.config_path)))


def _sale(
    ledger: Ledger,
    rrpid: bytes,
    respond: Callable[[Outcome], bytes],
    checked_at_ms: int | None = None,
) -> bytes:
    """A sale of 9.00 EUR decided under ``rrpid``, answered by ``respond``."""
    return ledger.authorize(
        pan=PAN_A, pan_expiry=EXPIRY, amount=900, currency=EUR, merchant_id=MERCHANT,
        xid=b"xid-" + rrpid, pi_digest=b"pi-" + rrpid, rrpid=rrpid,
        request_digest=b"digest-" + rrpid, respond=respond, capture_now=True,
        checked_at_ms=checked_at_ms,
    )  # fmt: skip


def _decide_unanswered(renewed: Renewed, checked_at_ms: int | None = None) -> bytes:
    """A sale decided whose answer cannot be signed: its capture posted, no answer stored;
    the request checked at ``checked_at_ms`` (now when None)."""
    rrpid = os.urandom(16)

    def failing(outcome: Outcome) -> bytes:
        raise RuntimeError("the token went away")

    with _ledger(renewed.made) as ledger, pytest.raises(AnswerNotStored):
        _sale(ledger, rrpid, failing, checked_at_ms)
    return rrpid


def _answer(renewed: Renewed, rrpid: bytes) -> None:
    """The merchant's retry, answered: the stored decision, nothing decided again."""
    answered: list[Outcome] = []

    def signing(outcome: Outcome) -> bytes:
        answered.append(outcome)
        return b"signed answer"

    with _ledger(renewed.made) as ledger:
        assert _sale(ledger, rrpid, signing) == b"signed answer"
        assert _sale(ledger, rrpid, signing) == b"signed answer"  # stored: not answered again
    assert len(answered) == 1


def _revoke(renewed: Renewed, der: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["revoke", "--config", renewed.config, "--thumb", thumbprint(der).hex()]
    code, _, err = _ca(argv, capsys)
    assert code == 0, err


def test_a_decision_awaiting_its_answer_holds_back_the_key_exchange_key_until_answered(
    renewed: Renewed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: deleted at once (exit 0), and the decision never answered again."""
    _revoke(renewed, renewed.kept.read_bytes(), capsys)
    rrpid = _decide_unanswered(renewed)
    before = renewed.versions()
    assert (GATEWAY_KEX_LABEL, 1) in before

    code, out, err = _ca(["prune-gateway", "--config", renewed.config, "--yes"], capsys)
    assert (code, out) == (1, ""), err
    assert err.startswith(REFUSED.format(renewed.ledger)), err
    assert SECTION in err and err.rstrip().endswith("; nothing deleted")
    assert f"prune-gateway --config {renewed.config} --yes` again once none is left" in err
    assert f"`setpay bank --config {renewed.config} show-unanswered`" in err
    assert "`setpay bank settle-unanswered`" in err
    assert renewed.kept.exists() and renewed.versions() == before

    # The dry run lists what would go and says --yes is refused, and why.
    code, out, err = _ca(["prune-gateway", "--config", renewed.config], capsys)
    assert (code, err) == (0, renewed.ledger_line)
    lines = out.splitlines()
    assert lines[:2] == [
        "would delete certs/gateway-kex.v1.der: its certificate revoked",
        "would delete key gateway-kex v1: its certificate revoked",
    ]
    assert lines[2].startswith(
        f"nothing deleted, and --yes is refused: the ledger ({renewed.ledger}) holds 1"
        " decided request"
    )
    assert len(lines) == 3 and renewed.kept.exists() and renewed.versions() == before

    _answer(renewed, rrpid)
    code, out, err = _ca(["prune-gateway", "--config", renewed.config, "--yes"], capsys)
    assert (code, err) == (0, renewed.ledger_line)
    assert out.splitlines() == [
        "deleted certs/gateway-kex.v1.der: its certificate revoked",
        "deleted key gateway-kex v1: its certificate revoked",
    ]
    assert not renewed.kept.exists()
    assert renewed.versions() == before - {(GATEWAY_KEX_LABEL, 1)}


def test_signature_keys_alone_are_pruned_with_a_decision_awaiting_its_answer(
    renewed_sqlite: Renewed, capsys: pytest.CaptureFixture[str]
) -> None:
    """An answer is signed with the current signature key: an older one opens nothing,
    and goes (its certificate revoked) whatever the ledger holds. The check's scope does
    not depend on the store: SQLite alone."""
    renewed = renewed_sqlite
    _revoke(renewed, _older_signature_certificate(renewed), capsys)
    _decide_unanswered(renewed)
    code, out, err = _ca(["prune-gateway", "--config", renewed.config, "--yes"], capsys)
    assert (code, err) == (0, ""), err  # no ledger read: it holds nothing they open
    assert out.splitlines() == ["deleted key gateway-sig v1: its certificate revoked"]
    assert renewed.kept.exists() and (GATEWAY_KEX_LABEL, 1) in renewed.versions()


def _older_signature_certificate(renewed: Renewed) -> bytes:
    """The certificate of ``gateway-sig`` v1, as the key backend stores it beside the key."""
    backend = open_backend(bank_keys_uri(load(renewed.made.config_path)))
    try:
        for key in backend.list_keys():
            if (key.label, key.version) == (GATEWAY_SIG_LABEL, 1):
                der = backend.certificate(key)
                assert der is not None
                return der
    finally:
        backend.close()
    raise AssertionError("no gateway-sig v1")


def test_a_ledger_that_cannot_be_read_refuses_the_pruning(
    renewed: Renewed,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command told of another ledger than the bank's: none there, so no telling
    whether a decision awaits its answer. Refused, dry run included; nothing made."""
    _revoke(renewed, renewed.kept.read_bytes(), capsys)
    before = renewed.versions()
    if renewed.store == "sqlite":
        elsewhere = renewed.made.directory / "elsewhere.db"
        monkeypatch.setenv("SETPAY_LEDGER", f"sqlite:{elsewhere}")
        expected = f"setpay ca prune-gateway: no ledger at {elsewhere} (ledger.store"
    else:
        # A schema holding no ledger: opened read-only, the store makes none.
        monkeypatch.setenv("SETPAY_LEDGER", _new_schema(request))
        expected = "setpay ca prune-gateway: cannot read the ledger ("
    for yes in (["--yes"], []):
        code, out, err = _ca(["prune-gateway", "--config", renewed.config, *yes], capsys)
        assert (code, out) == (1, ""), err
        assert err.startswith(expected), err
        assert err.rstrip().endswith("; nothing deleted")
    assert renewed.kept.exists() and renewed.versions() == before
    if renewed.store == "sqlite":
        assert not elsewhere.exists()
