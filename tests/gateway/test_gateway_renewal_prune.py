"""Pruning what renewals of the gateway's keys leave, on real banks (software keystore and
SoftHSM): ended or revoked kept certificates and the key versions only they certified go,
nothing a valid certificate still names does, and the bank starts and serves after."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.bank_pki import (
    GATEWAY_KEX_LABEL,
    GATEWAY_SIG_LABEL,
    bank_keys_uri,
    load_bank_pki,
    open_ca_store,
)
from gateway.ca.publishing import revoke
from gateway.gateway_pruning import Pruning, PruningStopped, prune_gateway_keys
from gateway.gateway_renewal import renew_gateway_keys
from hsm.base import KeyUsage
from hsm.errors import TransientBackendError
from hsm.software import SoftwareBackend
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from setcore.pki.certificate import load_certificate

from .actors import authorize, purchase, register_cardholder, register_merchant
from .renewal_support import key_versions
from .test_gateway_renewal import APPROVED, Served, certificate

RENEWED = (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL)
# A bank made this long ago and renewed now: its first gateway certificates (a year) end
# before the renewed ones, whose end the pruning is run near (the CAs' own key-exchange
# certificates also last a year from the bank's making, so a bank made over a year ago
# could not register merchants any more).
MADE_DAYS_AGO = 200


def _gateway_keys(served: Served) -> set[tuple[str, int]]:
    return {(label, v) for label, v in key_versions(served.config()) if label in RENEWED}


def _both(*versions: int) -> set[tuple[str, int]]:
    return {(label, v) for label in RENEWED for v in versions}


def _kept(served: Served) -> list[str]:
    return sorted(p.name for p in (served.directory / "certs").glob("gateway-kex.v*.der"))


def _listed(pruning: Pruning) -> list[str]:
    return [f"{item.what}: {item.reason}" for item in pruning.items]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    yield bank
    bank.stop()


@pytest.mark.parametrize("backend", ["software", "softhsm"])
def test_ended_certificates_and_their_keys_are_pruned(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    keys = request.getfixturevalue("token").uri() if backend == "softhsm" else None
    made_at = datetime.now(UTC) - timedelta(days=MADE_DAYS_AGO)
    served = Served(tmp_path / "bank", keys=keys, made_at=made_at)
    try:
        served.stop()
        renewal = renew_gateway_keys(served.config())
        assert _kept(served) == ["gateway-kex.v1.der"]
        ended = load_certificate(certificate(served.directory, "gateway-kex.v1.der"))
        day = f"{ended.not_valid_after_utc:%Y-%m-%d}"
        # Before the older certificates end, nothing goes.
        assert prune_gateway_keys(served.config(), apply=True).items == ()
        at = ended.not_valid_after_utc + timedelta(days=1)

        dry = prune_gateway_keys(served.config(), apply=False, at=at)
        assert not dry.applied
        assert _listed(dry) == [
            f"certs/gateway-kex.v1.der: its certificate ended {day}",
            f"key gateway-kex v1: its certificate ended {day}",
            f"key gateway-sig v1: its certificate ended {day}",
        ]
        # A dry run deletes nothing.
        assert _kept(served) == ["gateway-kex.v1.der"]
        assert _gateway_keys(served) == _both(1, 2)

        done = prune_gateway_keys(served.config(), apply=True, at=at)
        assert done.applied and done.items == dry.items
        assert _kept(served) == []
        assert _gateway_keys(served) == _both(2)
        assert prune_gateway_keys(served.config(), apply=True, at=at).items == ()

        # The bank starts on its renewed keys, and serves.
        world = served.start()
        merchant = register_merchant(world, f"M-prune-{backend}")
        cardholder = register_cardholder(world)
        result = authorize(world, merchant, purchase(merchant, cardholder, 900))
        assert result.auth_code == APPROVED
        assert result.gateway.thumbprint == renewal.signature.thumb
        assert merchant.gateway_kex.thumbprint == renewal.key_exchange.thumb
    finally:
        served.stop()


def test_nothing_goes_while_a_certificate_naming_it_is_valid(served: Served) -> None:
    served.stop()
    renew_gateway_keys(served.config())
    renew_gateway_keys(served.config())
    kept, versions = _kept(served), _gateway_keys(served)
    assert kept == ["gateway-kex.v1.der", "gateway-kex.v2.der"]
    assert prune_gateway_keys(served.config(), apply=True).items == ()
    assert _kept(served) == kept and _gateway_keys(served) == versions

    # Once the older ones have ended, they go; the current ones never do, ended or not.
    ends = load_certificate(certificate(served.directory, "gateway-kex.der")).not_valid_after_utc
    pruned = prune_gateway_keys(served.config(), apply=True, at=ends + timedelta(days=1))
    assert [item.what for item in pruned.items] == [
        "certs/gateway-kex.v1.der",
        "certs/gateway-kex.v2.der",
        "key gateway-kex v1",
        "key gateway-kex v2",
        "key gateway-sig v1",
        "key gateway-sig v2",
    ]
    assert _kept(served) == [] and _gateway_keys(served) == _both(3)
    world = served.start()
    merchant = register_merchant(world, "M-prune-current")
    result = authorize(world, merchant, purchase(merchant, register_cardholder(world), 800))
    assert result.auth_code == APPROVED


def test_a_revoked_key_exchange_certificate_goes_with_its_key(served: Served) -> None:
    """Revoked but unexpired counts as ended: the bank refuses what is sealed to it. Its
    signature twin, unrevoked, stays with its key."""
    served.stop()
    renew_gateway_keys(served.config())
    old_kex = thumbprint(certificate(served.directory, "gateway-kex.v1.der"))
    pki, store = load_bank_pki(served.config()), open_ca_store(served.config())
    try:
        revoke(store, pki.authority_keys(), thumb=old_kex)
    finally:
        pki.close()
        store.close()

    pruned = prune_gateway_keys(served.config(), apply=True)
    assert _listed(pruned) == [
        "certs/gateway-kex.v1.der: its certificate revoked",
        "key gateway-kex v1: its certificate revoked",
    ]
    assert _gateway_keys(served) == _both(2) | {(GATEWAY_SIG_LABEL, 1)}
    served.start()


def test_a_key_version_no_certificate_certifies_goes(served: Served) -> None:
    """A version newer than the one in use and never certified: what a renewal that did
    not finish leaves (made here as ``setpay keys generate`` makes one)."""
    served.stop()
    backend = open_backend(bank_keys_uri(served.config()))
    try:
        algorithm = backend.get(GATEWAY_SIG_LABEL).algorithm
        newer = backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, algorithm)
    finally:
        backend.close()
    assert newer.version == 2
    pruned = prune_gateway_keys(served.config(), apply=True)
    assert _listed(pruned) == [
        "key gateway-sig v2: no certificate certifies it (a renewal that did not finish?)"
    ]
    assert _gateway_keys(served) == _both(1)
    world = served.start()
    assert world.running.pki.gateway.signature_key.version == 1


def test_a_pruning_stopped_part_way_says_what_it_deleted(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    served.stop()
    renew_gateway_keys(served.config())
    ends = load_certificate(certificate(served.directory, "gateway-kex.v1.der")).not_valid_after_utc
    at = ends + timedelta(days=1)

    def token_away(self: SoftwareBackend, label: str, version: int | None = None) -> None:
        raise TransientBackendError("the key store is away")

    with monkeypatch.context() as patched:
        patched.setattr(SoftwareBackend, "delete", token_away)
        with pytest.raises(PruningStopped) as stopped:
            prune_gateway_keys(served.config(), apply=True, at=at)
    assert "after deleting certs/gateway-kex.v1.der;" in str(stopped.value)
    advised = re.search(r"`(setpay ca prune-gateway [^`]+)`", str(stopped.value))
    assert advised is not None
    argv = shlex.split(advised.group(1))
    assert argv[:4] == ["setpay", "ca", "prune-gateway", "--config"] and len(argv) == 5
    assert Path(argv[4]).is_file()
    assert _kept(served) == [] and _gateway_keys(served) == _both(1, 2)
    # The bank starts as it is; the next pruning deletes the keys left.
    served.start()
    served.stop()
    again = prune_gateway_keys(served.config(), apply=True, at=at)
    assert [item.what for item in again.items] == ["key gateway-kex v1", "key gateway-sig v1"]
    assert _gateway_keys(served) == _both(2)
