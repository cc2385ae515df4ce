"""A token failing a decapsulation whose input setpay has already checked: not the
sender's fault, so never the final "decryption failed" a bad envelope gets."""

from __future__ import annotations

from typing import Any

import pytest
from pkcs11 import exceptions as p11

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyUsage
from hsm.errors import DecapsulationError, TransientBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.session_keeper import TokenSession
from hsm.token_objects import TokenKey

from .keycheck import encapsulate


class _FailingDerive:
    """The key's private object, whose first ``failures`` derivations meet SoftHSM's
    general error (as several processes opening one token together have seen)."""

    def __init__(self, private: Any, calls: list[str], failures: int) -> None:
        self._private, self._calls, self._failures = private, calls, failures

    def derive_key(self, *args: Any, **kwargs: Any) -> Any:
        self._calls.append("derive")
        if len(self._calls) <= self._failures:
            raise p11.GeneralError()
        return self._private.derive_key(*args, **kwargs)


def _derive_failing(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[str]:
    calls: list[str] = []
    capable = Pkcs11Backend._capable

    def failing(
        backend: Pkcs11Backend, session: TokenSession, record: TokenKey, capability: type,
        action: str,
    ) -> Any:  # fmt: skip
        return _FailingDerive(
            capable(backend, session, record, capability, action), calls, failures
        )

    monkeypatch.setattr(Pkcs11Backend, "_capable", failing)
    return calls


@pytest.mark.integration
def test_a_passing_general_error_on_a_checked_point_is_run_again(
    pkcs11_backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = pkcs11_backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    point, expected = encapsulate(key)
    calls = _derive_failing(monkeypatch, failures=1)
    # A valid purchase, not refused for good because the token stumbled once.
    assert pkcs11_backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, point) == expected
    assert calls == ["derive", "derive"]


@pytest.mark.integration
def test_a_token_that_keeps_refusing_a_checked_point_is_unavailable_not_a_bad_envelope(
    pkcs11_backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = pkcs11_backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    point, _ = encapsulate(key)
    calls = _derive_failing(monkeypatch, failures=2)
    with pytest.raises(TransientBackendError, match="cannot decapsulate now"):
        pkcs11_backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, point)
    assert calls == ["derive", "derive"]  # bounded: once more, not until it works


@pytest.mark.integration
def test_a_point_off_the_curve_is_still_a_bad_envelope_without_a_token_call(
    pkcs11_backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = pkcs11_backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    point, _ = encapsulate(key)
    calls = _derive_failing(monkeypatch, failures=0)
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    with pytest.raises(DecapsulationError):
        pkcs11_backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, off_curve)
    assert calls == []
