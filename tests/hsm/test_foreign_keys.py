"""Keys made by other tools: used only when they can never leave the token."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import KeyNotFound, PermanentBackendError, UnsupportedAlgorithm
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_catalog import build_catalog
from hsm.token_objects import import_attributes
from hsm.token_session import TokenSession

from .testbed import SOFTHSM_MODULE, SoftToken, pkcs11_tool


@pytest.fixture
def backend(pkcs11_backend: Pkcs11Backend) -> Pkcs11Backend:
    """The PKCS#11 backend alone (overrides the contract suite's fixture)."""
    return pkcs11_backend


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
        ({"private": True, "sensitive": True, "extractable": False}, True),
        ({"private": True, "sensitive": False, "extractable": False}, False),
        ({"private": True, "sensitive": True, "extractable": True}, False),
        # A token that does not say: assume the worst.
        ({"private": True, "extractable": False}, False),
        ({"private": True, "sensitive": True}, False),
        ({"sensitive": True, "extractable": False}, False),
        # Made without the PIN (only private objects need it): its maker may know it.
        ({"private": False, "sensitive": True, "extractable": False}, False),
    ],
)
def test_catalog_lists_only_keys_that_cannot_leave_the_token(
    protection: dict[str, bool], listed: bool
) -> None:
    keys = build_catalog([], [_rsa_private_attributes(**protection)], [], None)
    assert [key.handle.label for key in keys] == (["foreign-rsa"] if listed else [])


# Run in a process of its own that never logs in: what anyone who can reach the token
# without its PIN can do (login state belongs to the process, so not in this one).
_WITHOUT_LOGIN = """
import json, sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
module, label, meta = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
token = pkcs11.lib(module).get_token(token_label=label)
with token.open(rw=True) as session:
    session.create_object({
        Attribute.CLASS: ObjectClass.DATA, Attribute.APPLICATION: "setpay",
        Attribute.LABEL: meta["label"], Attribute.VALUE: json.dumps(meta).encode(),
        Attribute.TOKEN: True, Attribute.PRIVATE: False,
    })
"""


@pytest.mark.integration
def test_metadata_written_without_the_pin_is_not_believed(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    signing = backend.generate("gw-sign", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    exchange = backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    before = backend.list_keys()
    # A public data object claiming the key-exchange key is a newer signing key.
    meta = {
        "format": 1,
        "label": "gw-sign",
        "version": 7,
        "usage": "signature",
        "algorithm": "ec-p256",
        "id": backend.object_id(exchange).hex(),
    }
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LOGIN, SOFTHSM_MODULE, token.label, json.dumps(meta)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # setpay's metadata is private: only a logged-in user may say what a key is for.
    assert backend.list_keys() == before
    assert backend.get("gw-sign") == signing
    assert backend.get("gw-kex") == exchange


def _labels_on_token(token: SoftToken, object_type: str) -> list[str]:
    listing = pkcs11_tool(token, "--list-objects", "--type", object_type).stdout
    labels = [line.split(":", 1)[1].strip() for line in listing.splitlines() if "label:" in line]
    return sorted(labels)


def _keypairgen(token: SoftToken, ck_id: str, label: str) -> None:
    pkcs11_tool(
        token, "--keypairgen", "--key-type", "EC:prime256v1", "--id", ck_id,
        "--label", label, "--usage-sign",
    )  # fmt: skip


@pytest.mark.integration
def test_two_foreign_keys_under_one_id_are_neither_used_nor_destroyed_together(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    _keypairgen(token, "01", "app-a")
    _keypairgen(token, "01", "app-b")
    # The id cannot tell which public key is whose: listing either would give one of
    # them the other's public key.
    assert backend.list_keys() == []
    with pytest.raises(KeyNotFound):
        backend.get("app-a")
    with pytest.raises(KeyNotFound):
        backend.delete("app-a")
    assert _labels_on_token(token, "privkey") == ["app-a", "app-b"]
    assert _labels_on_token(token, "pubkey") == ["app-a", "app-b"]


@pytest.mark.integration
def test_a_foreign_key_made_under_a_setpay_keys_id_is_never_destroyed_with_it(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    key = backend.generate("gw-sign", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    ck_id = backend.object_id(key).hex()
    _keypairgen(token, ck_id, "intruder")
    assert backend.list_keys() == []
    with pytest.raises(KeyNotFound):
        backend.delete("gw-sign")
    assert _labels_on_token(token, "privkey") == ["gw-sign", "intruder"]


@pytest.mark.integration
def test_delete_refuses_an_id_another_key_took_since_the_token_was_read(
    backend: Pkcs11Backend, token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = backend.generate("gw-sign", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    before = backend._link.run(backend._catalog.scan, "list keys")
    _keypairgen(token, backend.object_id(key).hex(), "intruder")
    # The key list as read just before the other tool ran: what ``delete`` believes.
    monkeypatch.setattr(backend._catalog, "scan", lambda session: before)
    with pytest.raises(PermanentBackendError, match="also another key's: nothing destroyed"):
        backend.delete("gw-sign")
    assert _labels_on_token(token, "privkey") == ["gw-sign", "intruder"]
    assert _labels_on_token(token, "pubkey") == ["gw-sign", "intruder"]


@pytest.mark.integration
def test_a_label_two_foreign_keys_carry_names_neither_until_one_is_adopted(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    _keypairgen(token, "01", "gw")
    _keypairgen(token, "02", "gw")
    # Which one the token lists first is no choice an operator made.
    assert backend.list_keys() == []
    with pytest.raises(KeyNotFound):
        backend.get("gw")
    adopted = backend.adopt(b"\x02", "gw", KeyUsage.SIGNATURE)
    assert [(k.label, k.version) for k in backend.list_keys()] == [("gw", 1)]
    assert backend.object_id(backend.get("gw")) == b"\x02" == backend.object_id(adopted)


@pytest.mark.integration
def test_adopting_a_key_another_tool_made_as_a_public_object_says_so(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    # Logged in, as an operator's tool would be: CKA_PRIVATE false is the tool's choice.
    private, public = import_attributes("app", b"\x01", KeyUsage.SIGNATURE, key)

    def make(session: TokenSession) -> None:
        session.session.create_object({**private, Attribute.PRIVATE: False})
        session.session.create_object(public)

    backend._link.run(make, "make a key as another tool would", retry=False)
    # It used to say "key with CKA_ID 01 is not on token ...": there it is, listed.
    assert _labels_on_token(token, "privkey") == ["app"]
    with pytest.raises(PermanentBackendError) as refused:
        backend.adopt(b"\x01", "app", KeyUsage.SIGNATURE)
    assert str(refused.value) == (
        "key with CKA_ID 01 is a public object (CKA_PRIVATE false): anyone can make such "
        "objects without the PIN; make or import the key again as a private object"
    )
    assert backend.list_keys() == []
    assert _labels_on_token(token, "data") == []


@pytest.mark.integration
def test_a_foreign_rsa_key_of_another_exponent_is_not_adopted(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    # Made by another tool (e = 3 is one pkcs11-tool and OpenSSL may choose): setcore would
    # refuse every signature it made, so it is refused here, before anything changes.
    key = rsa.generate_private_key(3, 2048)
    private, public = import_attributes("app", b"\x01", KeyUsage.SIGNATURE, key)

    def make(session: TokenSession) -> None:
        session.session.create_object(private)
        session.session.create_object(public)

    backend._link.run(make, "make a key as another tool would", retry=False)
    with pytest.raises(UnsupportedAlgorithm, match="RSA public exponent 3 is not allowed"):
        backend.adopt(b"\x01", "gateway-sig", KeyUsage.SIGNATURE)
    assert _labels_on_token(token, "data") == []  # no metadata written
    assert "gateway-sig" not in {key.label for key in backend.list_keys()}
