"""A dropped merchant request loses its record first, then its keys.

``MerchantRegistrar._drop`` (the CA holds nothing of the request, or its keys are gone)
and ``_refused`` (the CA's verified refusal) remove ``registration.json`` before they
destroy the keys it names: a crash between the two then leaves keys no record names (a
slot each, at worst), never a record naming a destroyed key, which no run could finish.
The reverse order would pass every test that only looks at the end state, so these watch
the order itself: the key backend, a test double over the software one, notes at each
destruction whether the record is still on disk.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from clients.authority import AuthorityClient
from clients.merchant.config import MerchantConfig
from clients.merchant.registration import (
    KEY_EXCHANGE_LABEL,
    PENDING_FILE,
    SIGNATURE_LABEL,
    MerchantRegistrar,
)
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.software import SoftwareBackend
from setcore.pki.truststore import TrustStore
from setcore.registration_merchant import MerchantRequestState


class _Witness(SoftwareBackend):
    """Software keys in memory; each destruction noted with whether ``record`` existed."""

    def __init__(self, record: Path, *, failing: bool = False) -> None:
        super().__init__(None)
        self.record = record
        self.failing = failing
        self.destroyed: list[tuple[str, int | None, bool]] = []

    def delete(self, label: str, version: int | None = None) -> None:
        self.destroyed.append((label, version, self.record.exists()))
        if self.failing:
            raise _Destroying(f"{label} v{version}")
        super().delete(label, version)


class _Destroying(Exception):
    """A key destruction that fails (the process gone in the middle of it)."""


def _registrar(directory: Path, backend: _Witness) -> MerchantRegistrar:
    """A registrar over ``directory`` that talks to no CA: dropping asks nobody."""
    config = cast(MerchantConfig, SimpleNamespace(base_dir=directory))
    return MerchantRegistrar(config, backend, cast(AuthorityClient, None), cast(TrustStore, None))


def _recorded(directory: Path, backend: _Witness) -> dict[str, Any]:
    """Both keys of a request, and a record naming them (as ``save_pending`` words it)."""
    sig = backend.generate(SIGNATURE_LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    kex = backend.generate(KEY_EXCHANGE_LABEL, KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    (directory / PENDING_FILE).write_text("{}")
    return {"signature_version": sig.version, "key_exchange_version": kex.version}


def _state(backend: _Witness) -> MerchantRequestState:
    """The request state ``_refused`` reads: its two keys."""
    keys = SimpleNamespace(
        signature_key=backend.get(SIGNATURE_LABEL, 1),
        key_exchange_key=backend.get(KEY_EXCHANGE_LABEL, 1),
    )
    return cast(MerchantRequestState, keys)


ALL_DESTROYED_AFTER = sorted([(SIGNATURE_LABEL, 1, False), (KEY_EXCHANGE_LABEL, 1, False)])


def test_a_dropped_request_loses_its_record_before_its_keys(tmp_path: Path) -> None:
    backend = _Witness(tmp_path / PENDING_FILE)
    record = _recorded(tmp_path, backend)
    _registrar(tmp_path, backend)._drop(record)
    assert sorted(backend.destroyed) == ALL_DESTROYED_AFTER
    assert backend.list_keys() == []


def test_a_refused_request_loses_its_record_before_its_keys(tmp_path: Path) -> None:
    backend = _Witness(tmp_path / PENDING_FILE)
    _recorded(tmp_path, backend)
    _registrar(tmp_path, backend)._refused(_state(backend))
    assert sorted(backend.destroyed) == ALL_DESTROYED_AFTER
    assert backend.list_keys() == []


@pytest.mark.parametrize("dropping", ["drop", "refused"])
def test_a_destruction_that_fails_leaves_no_record_naming_the_keys(
    tmp_path: Path, dropping: str
) -> None:
    """The first destruction fails: the record is gone already, the keys merely kept."""
    backend = _Witness(tmp_path / PENDING_FILE, failing=True)
    record = _recorded(tmp_path, backend)
    registrar = _registrar(tmp_path, backend)
    with pytest.raises(_Destroying):
        if dropping == "drop":
            registrar._drop(record)
        else:
            registrar._refused(_state(backend))
    assert not (tmp_path / PENDING_FILE).exists()
    assert len(backend.destroyed) == 1 and backend.destroyed[0][2] is False
    assert len(backend.list_keys()) == 2
