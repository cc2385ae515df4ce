"""Keys made by other tools: used only when they can never leave the token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, KeyType

from hsm.base import KeyUsage
from hsm.errors import KeyNotFound, PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_objects import build_catalog

from .testbed import SoftToken, pkcs11_tool


@pytest.fixture
def backend(token: SoftToken) -> Iterator[Pkcs11Backend]:
    """A PKCS#11 backend on a fresh token."""
    opened = Pkcs11Backend(token.config())
    yield opened
    opened.close()


@pytest.mark.integration
def test_extractable_key_made_by_pkcs11_tool_is_neither_used_nor_adopted(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    pkcs11_tool(
        token, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "0e0e0e",
        "--label", "leaky-ec", "--usage-sign", "--extractable",
    )  # fmt: skip
    listing = pkcs11_tool(token, "--list-objects", "--type", "privkey", "--id", "0e0e0e").stdout
    assert "extractable" in listing and "never extractable" not in listing
    # Its usage is unambiguous (sign only), but it can be exported: not a setpay key.
    with pytest.raises(KeyNotFound, match="leaky-ec"):
        backend.get("leaky-ec")
    assert backend.list_keys() == []
    with pytest.raises(PermanentBackendError, match="can leave the token") as caught:
        backend.adopt(bytes.fromhex("0e0e0e"), "gateway-sig", KeyUsage.SIGNATURE)
    assert "CKA_ID 0e0e0e" in str(caught.value)
    assert backend.list_keys() == []


def _rsa_private_attributes(**protection: bool) -> dict[Attribute, Any]:
    numbers = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    return {
        Attribute.ID: b"\x01",
        Attribute.LABEL: "foreign-rsa",
        Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.MODULUS: numbers.n.to_bytes(256, "big"),
        Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes(3, "big"),
        **{getattr(Attribute, name.upper()): value for name, value in protection.items()},
    }


@pytest.mark.parametrize(
    ("protection", "listed"),
    [
        ({"sensitive": True, "extractable": False}, True),
        ({"sensitive": False, "extractable": False}, False),
        ({"sensitive": True, "extractable": True}, False),
        ({"extractable": False}, False),  # a token that does not say: assume the worst
        ({"sensitive": True}, False),
    ],
)
def test_catalog_lists_only_keys_that_cannot_leave_the_token(
    protection: dict[str, bool], listed: bool
) -> None:
    keys = build_catalog([], [_rsa_private_attributes(**protection)], [], None)
    assert [key.handle.label for key in keys] == (["foreign-rsa"] if listed else [])
