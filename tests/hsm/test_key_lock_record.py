"""The key lock a thread holds, as every token call reads it (``TokenLink._ensure_connected``).

Threads that never take the key lock (every signing thread) read its record at every
call: a plain ``threading.local`` never set in the thread answered through a raised and
caught AttributeError (~300 ns); the record's class now holds the default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.pkcs11 import Pkcs11Backend

from .keycheck import verify
from .testbed import DATA


def _in_thread(read: Callable[[], object]) -> dict[str, object]:
    """What ``read()`` returns ("value") or raises ("raised") in a new thread."""
    seen: dict[str, object] = {}

    def run() -> None:
        try:
            seen["value"] = read()
        except Exception as exc:  # what the thread met is the finding
            seen["raised"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen


@pytest.mark.integration
def test_a_thread_that_never_took_the_key_lock_holds_none(pkcs11_backend: Pkcs11Backend) -> None:
    link = pkcs11_backend._link
    assert _in_thread(lambda: link._key_lock.stem) == {"value": None}


@pytest.mark.integration
def test_the_key_lock_is_held_by_its_thread_only(pkcs11_backend: Pkcs11Backend) -> None:
    backend = pkcs11_backend
    key = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    with backend._link.admin_lock():
        assert backend._link._key_lock.stem is not None
        # Another thread holds none, and its token calls run.
        assert _in_thread(lambda: backend._link._key_lock.stem) == {"value": None}
        signed = _in_thread(lambda: backend.sign(key, DATA))
        signature = signed.get("value")
        assert isinstance(signature, bytes), signed
        verify(key.public_key, signature, DATA)
    assert backend._link._key_lock.stem is None  # released, and said so
