"""Faults a real token reports under the backend: each must surface as the right error.

Tokens change under a running backend: another tool narrows a key's attributes, another
process deletes a key. Each case here makes the change for real on SoftHSM and checks
the error the next operation raises, and what the backend did (or did not) reset.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pkcs11 import Attribute, ObjectClass

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyUsage
from hsm.errors import KeyUsageError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_objects import key_id
from hsm.token_session import TokenSession

from .keycheck import encapsulate
from .testbed import SoftToken

DATA = b"payment instructions to be signed"


@pytest.fixture
def backend(token: SoftToken) -> Iterator[Pkcs11Backend]:
    """A PKCS#11 backend on a fresh token."""
    opened = Pkcs11Backend(token.config())
    yield opened
    opened.close()


def _set_private_attribute(
    backend: Pkcs11Backend, label: str, attribute: Attribute, value: bool
) -> None:
    """Change a private key's attribute on the token, as another tool would."""

    def change(session: TokenSession) -> None:
        session.find(ObjectClass.PRIVATE_KEY, key_id(label, 1))[attribute] = value

    backend._link.run(change, "change a key attribute", retry=False)


@pytest.mark.integration
def test_token_refusing_to_derive_is_a_usage_error_not_a_bad_ciphertext(
    backend: Pkcs11Backend,
) -> None:
    key = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    _set_private_attribute(backend, "kex", Attribute.DERIVE, False)
    point, _ = encapsulate(key)
    with pytest.raises(KeyUsageError, match="refused to decapsulate") as caught:
        backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, point)
    # The operator needs the CKR code to fix the key; it says nothing about the input.
    assert caught.value.__cause__ is not None
