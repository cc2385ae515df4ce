"""Key objects anyone reaching a token without its PIN can create: under a setpay key's
CKA_ID (public objects: setpay's public keys and certificates show the ids), or under a
label of its own.

Such an object must neither hide the key nor take its place, nor pass for a key of
another tool; what it cannot be kept from doing is said plainly, without advice that
does not fit a setpay key.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import KeyNotFound, PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.policy import public_key_der
from hsm.token_catalog import build_catalog, metadata_objects
from hsm.token_session import TokenSession

from .keycheck import verify
from .testbed import DATA, SOFTHSM_MODULE, SoftToken, pkcs11_tool

# Run in a process of its own that never logs in (login state belongs to the process).
# Makes key objects of the given kind under the given CKA_ID and label; a private key is
# sensitive and not extractable, as a key of another tool may be, yet its maker knows it.
_PLANT = """
import sys
import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, ObjectClass
module, label, kind, ck_id, key_label = sys.argv[1:6]
def big(value):
    return value.to_bytes((value.bit_length() + 7) // 8, "big")
common = {Attribute.ID: bytes.fromhex(ck_id), Attribute.LABEL: key_label,
          Attribute.TOKEN: True, Attribute.PRIVATE: False}
p256 = bytes.fromhex("06082a8648ce3d030107")
key = ec.generate_private_key(ec.SECP256R1())
point = key.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
ec_public = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC,
             Attribute.EC_PARAMS: p256, Attribute.EC_POINT: bytes([4, len(point)]) + point}
ec_private = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC,
              Attribute.EC_PARAMS: p256, Attribute.SIGN: True, Attribute.SENSITIVE: True,
              Attribute.EXTRACTABLE: False,
              Attribute.VALUE: key.private_numbers().private_value.to_bytes(32, "big")}
if kind == "rsa-public":
    numbers = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    templates = [{Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
                  Attribute.MODULUS: big(numbers.n), Attribute.PUBLIC_EXPONENT: big(numbers.e)}]
else:
    templates = {"ec-public": [ec_public], "ec-private": [ec_private],
                 "ec-pair": [ec_private, ec_public]}[kind]
token = pkcs11.lib(module).get_token(token_label=label)
with token.open(rw=True) as session:
    for template in templates:
        session.create_object({**common, **template})
"""


@pytest.fixture
def backend(token: SoftToken) -> Iterator[Pkcs11Backend]:
    """A PKCS#11 backend on a fresh token."""
    opened = Pkcs11Backend(token.config())
    yield opened
    opened.close()


def _plant(token: SoftToken, kind: str, ck_id: bytes, label: str = "planted") -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PLANT, SOFTHSM_MODULE, token.label, kind, ck_id.hex(), label],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _labels_on_token(token: SoftToken, object_type: str) -> list[str]:
    listing = pkcs11_tool(token, "--list-objects", "--type", object_type).stdout
    labels = [line.split(":", 1)[1].strip() for line in listing.splitlines() if "label:" in line]
    return sorted(labels)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("algorithm", "planted"),
    [(KeyAlgorithm.EC_P256, "ec-public"), (KeyAlgorithm.RSA_2048, "rsa-public")],
)
def test_a_public_key_planted_under_a_setpay_keys_id_hides_nothing(
    backend: Pkcs11Backend, token: SoftToken, algorithm: KeyAlgorithm, planted: str
) -> None:
    key = backend.generate("gateway-sig", KeyUsage.SIGNATURE, algorithm)
    _plant(token, planted, backend.object_id(key))
    # It used to take the key out of the catalog: the bank would not start.
    assert backend.list_keys() == [key]
    reopened = Pkcs11Backend(token.config())
    try:
        assert reopened.get("gateway-sig") == key
        verify(key.public_key, reopened.sign(key, DATA), DATA)
    finally:
        reopened.close()
    # Deleting the key takes its own public key and leaves the stranger's object.
    backend.delete("gateway-sig", 1)
    assert backend.list_keys() == []
    assert _labels_on_token(token, "pubkey") == ["planted"]


@pytest.mark.integration
def test_the_metadata_of_a_made_key_vouches_for_its_public_key(
    backend: Pkcs11Backend,
) -> None:
    key = backend.generate("merchant-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)

    def read(session: TokenSession) -> list[dict[str, Any]]:
        return [meta for _, meta in metadata_objects(session)]

    # One data object: the one written before the key existed is gone.
    (meta,) = backend._link.run(read, "read metadata")
    assert meta["public"] == hashlib.sha256(public_key_der(key.public_key)).digest()


@pytest.mark.integration
def test_adopting_an_id_two_public_keys_carry_changes_nothing(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    pkcs11_tool(
        token, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01",
        "--label", "app", "--usage-sign",
    )  # fmt: skip
    _plant(token, "ec-public", b"\x01")
    before = pkcs11_tool(token, "--list-objects", "--type", "privkey").stdout
    with pytest.raises(PermanentBackendError, match="nothing adopted") as refused:
        backend.adopt(b"\x01", "app", KeyUsage.SIGNATURE)
    assert "CKA_ID 01 is carried by 1 private and 2 public key objects" in str(refused.value)
    # It used to narrow the key and write its metadata, then find the key "vanished".
    assert pkcs11_tool(token, "--list-objects", "--type", "privkey").stdout == before
    assert _labels_on_token(token, "data") == []


@pytest.mark.integration
def test_a_private_key_object_planted_under_a_setpay_keys_id_hides_nothing(
    backend: Pkcs11Backend, token: SoftToken, caplog: pytest.LogCaptureFixture
) -> None:
    key = backend.generate("gateway-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    # A private key object that is a public object (CKA_PRIVATE false): no login needed.
    _plant(token, "ec-private", backend.object_id(key))
    with caplog.at_level(logging.WARNING, logger="hsm"):
        # It used to take the key out of the catalog: two private key objects, one id.
        assert backend.list_keys() == [key]
    assert caplog.records == []
    reopened = Pkcs11Backend(token.config())
    try:
        # Operations find the key by its id, which the planted object must not answer.
        assert reopened.get("gateway-sig") == key
        verify(key.public_key, reopened.sign(key, DATA), DATA)
    finally:
        reopened.close()
    # Deleting the key takes its own objects and leaves the stranger's.
    backend.delete("gateway-sig", 1)
    assert backend.list_keys() == []
    assert _labels_on_token(token, "privkey") == ["planted"]


@pytest.mark.integration
def test_a_key_planted_under_a_free_label_is_neither_listed_nor_adopted(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    # Sensitive, not extractable, signing only: it looks like another tool's key, but
    # whoever made it without the PIN knows its value.
    _plant(token, "ec-pair", b"\x01", label="gateway-sig")
    # It used to be listed as another tool's key, found by label without any adoption.
    assert backend.list_keys() == []
    with pytest.raises(KeyNotFound):
        backend.get("gateway-sig")
    with pytest.raises(PermanentBackendError, match="CKA_ID 01 is a public object"):
        backend.adopt(b"\x01", "gateway-sig", KeyUsage.SIGNATURE)
    assert _labels_on_token(token, "data") == []
    # The label is free for setpay's own first version.
    made = backend.generate("gateway-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert made.version == 1 and backend.list_keys() == [made]


def _ec_public_attributes(ck_id: bytes) -> dict[Attribute, Any]:
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    raw = b"\x04" + point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big")
    return {
        Attribute.ID: ck_id,
        Attribute.KEY_TYPE: KeyType.EC,
        Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107"),
        Attribute.EC_POINT: bytes([4, len(raw)]) + raw,
    }


def _rsa_setpay_key() -> tuple[dict[Attribute, Any], dict[str, Any]]:
    """A setpay RSA signing key's private key attributes, and metadata older than
    ``public``."""
    ck_id = bytes.fromhex("a1b2c3d4e5f60718")
    numbers = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    private = {
        Attribute.ID: ck_id,
        Attribute.LABEL: "gateway-sig",
        Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.MODULUS: numbers.n.to_bytes(256, "big"),
        Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes(3, "big"),
    }
    meta = {
        "label": "gateway-sig",
        "version": 1,
        "usage": KeyUsage.SIGNATURE,
        "algorithm": KeyAlgorithm.RSA_2048,
        "id": ck_id,
        "public": None,
    }
    return private, meta


def test_a_second_private_key_object_only_a_logged_in_user_could_make_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    private, meta = _rsa_setpay_key()
    public = {Attribute.ID: meta["id"], Attribute.KEY_TYPE: KeyType.RSA}
    # One made without the PIN is not the key's (nor anything setpay uses): ignored.
    planted = {**private, Attribute.PRIVATE: False}
    assert build_catalog([meta], [private, planted], [public], None)[0].ck_id == meta["id"]
    # CKA_PRIVATE true: the id cannot say which is setpay's, and operations find it by id.
    twin = dict(private)
    with caplog.at_level(logging.WARNING, logger="hsm.token_catalog"):
        assert build_catalog([meta], [private, twin], [public], None) == []
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning.startswith(
        f"key 'gateway-sig' v1 is not used: another private key object carries its CKA_ID "
        f"{meta['id'].hex()}"
    )
    # Advice for two keys of other tools (new ids, then adopt) does not fit a setpay key.
    assert "adopt" not in warning


def test_metadata_older_than_the_public_key_record_keeps_the_old_rule_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    private, meta = _rsa_setpay_key()
    ck_id = meta["id"]
    public = {Attribute.ID: ck_id, Attribute.KEY_TYPE: KeyType.RSA}
    assert [k.handle.label for k in build_catalog([meta], [private], [public], None)] == [
        "gateway-sig"
    ]
    planted = _ec_public_attributes(ck_id)
    with caplog.at_level(logging.WARNING, logger="hsm.token_catalog"):
        assert build_catalog([meta], [private], [public, planted], None) == []
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning.startswith("key 'gateway-sig' v1 is not used: another public key object")
    assert "older than the record of its public key" in warning and "adopt" not in warning
