"""One session the token closes (a network HSM ends idle ones) is not a lost token.

The session is closed for real, behind the backend's back, with ``C_CloseSession`` on
the module the backend uses; the next operation must open a new one and go on, with no
module restart (which would log every backend of the process out).
"""

from __future__ import annotations

import ctypes
import shutil
from collections.abc import Callable, Iterator

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import TransientBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.session_keeper import TokenSession

from .keycheck import verify
from .testbed import DATA, SOFTHSM_MODULE, SoftHsm, SoftToken

Events = list[tuple[str, str, str | None]]


def _observer(events: Events, name: str) -> Callable[[str, str, float, str | None], None]:
    return lambda op, _algorithm, _seconds, error: events.append((name, op, error))


def _close_behind_its_back(handle: int) -> None:
    with cryptoki(SOFTHSM_MODULE).lock:
        assert ctypes.CDLL(SOFTHSM_MODULE).C_CloseSession(ctypes.c_ulong(handle)) == 0


def _pooled_session(backend: Pkcs11Backend) -> int:
    handle: int = backend._link.run(lambda session: session.session.handle, "peek")
    return handle


@pytest.fixture
def bystander(softhsm: SoftHsm) -> Iterator[tuple[Pkcs11Backend, Events]]:
    events: Events = []
    other = softhsm.init_token()
    opened = Pkcs11Backend(other.config(), _observer(events, "bystander"))
    yield opened, events
    opened.close()
    shutil.rmtree(other.directory, ignore_errors=True)


@pytest.mark.integration
def test_a_session_the_token_closed_is_replaced_without_a_restart(
    token: SoftToken, bystander: tuple[Pkcs11Backend, Events]
) -> None:
    other, events = bystander
    backend = Pkcs11Backend(token.config(), _observer(events, "this"))
    try:
        key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        other_key = other.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        backend.sign(key, DATA)
        other.sign(other_key, DATA)
        generation = cryptoki(SOFTHSM_MODULE).generation
        _close_behind_its_back(_pooled_session(backend))
        events.clear()
        verify(key.public_key, backend.sign(key, DATA), DATA)
        other.sign(other_key, DATA)
        assert cryptoki(SOFTHSM_MODULE).generation == generation
        assert events == [("this", "sign", None), ("bystander", "sign", None)]
    finally:
        backend.close()


@pytest.mark.integration
def test_a_new_session_dying_too_reconnects(pkcs11_backend: Pkcs11Backend) -> None:
    key = pkcs11_backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    runs: list[int] = []

    def closed_each_time(session: TokenSession) -> None:
        # Every session this operation is given dies under it.
        runs.append(session.session.handle)
        _close_behind_its_back(session.session.handle)
        session.session.generate_random(128)

    generation = cryptoki(SOFTHSM_MODULE).generation
    with pytest.raises(TransientBackendError, match="cannot list keys now"):
        pkcs11_backend._link.run(closed_each_time, "list keys")
    assert len(runs) == 2 and runs[0] != runs[1]  # once more, on a new session
    # Two sessions dead in a row: treated as the token's trouble, reconnected.
    verify(key.public_key, pkcs11_backend.sign(key, DATA), DATA)
    assert cryptoki(SOFTHSM_MODULE).generation == generation + 1
