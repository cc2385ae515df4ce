"""Known-answer vectors: the framing rules and the envelope/signature formats are pinned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from hsm.base import KeyUsage
from hsm.software import SoftwareBackend
from setcore.encoding import (
    aead_associated_data,
    digest,
    digest_parts,
    signature_input,
    thumbprint,
)
from setcore.envelope import open_sealed
from setcore.errors import ErrorCode, ProtocolError
from setcore.link import link_content_type
from setcore.purchase import hod
from setcore.signed import verify_signature
from setpay.v1 import common_pb2, crypto_pb2

from .test_low_s import P256_ORDER, is_high_s

VECTORS = Path(__file__).parent.parent / "vectors"


def _load(name: str) -> object:
    return json.loads((VECTORS / name).read_text())


def test_framing_vectors() -> None:
    v = _load("framing.json")
    assert isinstance(v, dict)
    d = v["digest"]
    assert digest(d["content_type"], bytes.fromhex(d["data_hex"])).hex() == d["expected_hex"]
    d = v["digest_parts"]
    parts = [bytes.fromhex(p) for p in d["parts_hex"]]
    assert digest_parts(d["content_type"], parts).hex() == d["expected_hex"]
    d = v["signature_input"]
    got = signature_input(d["content_type"], d["algorithm"], bytes.fromhex(d["tbs_hex"]))
    assert got.hex() == d["expected_hex"]
    assert got.startswith(b"setpay/v1 SIG\x00setpay.v1.PITBS\x00ecdsa-p256-sha256\x00")
    d = v["aead_associated_data"]
    ad = aead_associated_data(
        d["content_type"], d["part"], bytes.fromhex(d["recipient_hex"]),
        bytes.fromhex(d["xid_hex"]), bytes.fromhex(d["rrpid_hex"]),
    )  # fmt: skip
    assert ad.hex() == d["expected_hex"]
    d = v["thumbprint"]
    assert thumbprint(bytes.fromhex(d["der_hex"])).hex() == d["expected_hex"]


def test_hod_vector() -> None:
    """Wallet and merchant compute HOD apart and the gateway compares them: its layout is
    the one both sides must keep."""
    v = _load("framing.json")
    assert isinstance(v, dict)
    d = v["hod"]
    amount = common_pb2.CurrencyAmount(currency=d["currency"], amount=d["amount"], exp10=d["exp10"])
    got = hod(bytes.fromhex(d["od_hex"]), amount, bytes.fromhex(d["od_salt_hex"]))
    assert got.hex() == d["expected_hex"]


def test_link_content_type_vector() -> None:
    """The content type an EncB's Link is signed and sealed under: both ends derive it."""
    v = _load("framing.json")
    assert isinstance(v, dict)
    d = v["link_content_type"]
    assert link_content_type(d["t1_content_type"]) == d["expected"]


def test_parts_framing_is_unambiguous() -> None:
    assert digest_parts("t", [b"ab", b"c"]) != digest_parts("t", [b"a", b"bc"])
    with pytest.raises(ValueError):
        digest("a\x00", b"b")


@pytest.mark.parametrize("index", [0, 1])
def test_envelope_vectors_open(index: int) -> None:
    v = _load("envelopes.json")
    assert isinstance(v, list)
    vec = v[index]
    backend = SoftwareBackend.ephemeral()
    key = serialization.load_pem_private_key(vec["recipient_key_pem"].encode(), None)
    handle = backend.import_key("kat", KeyUsage.KEY_EXCHANGE, key)  # type: ignore[arg-type]
    assert handle.kem is not None and handle.kem.value == vec["kem"]
    sealed = crypto_pb2.Sealed.FromString(bytes.fromhex(vec["sealed_hex"]))
    opened = open_sealed(
        sealed, backend, handle, bytes.fromhex(vec["recipient_thumb_hex"]), "setpay.v1.PITBE",
        extra_type="setpay.v1.PANData",
    )  # fmt: skip
    assert opened.plaintext.hex() == vec["plaintext_hex"]
    assert opened.extra is not None and opened.extra.hex() == vec["extra_hex"]


@pytest.mark.parametrize("index", [0, 1])
def test_signature_vectors_verify(index: int) -> None:
    v = _load("signatures.json")
    assert isinstance(v, list)
    vec = v[index]
    key = serialization.load_pem_private_key(vec["key_pem"].encode(), None)
    sig = crypto_pb2.Signature(alg=vec["alg"], value=bytes.fromhex(vec["signature_hex"]))
    verify_signature(key.public_key(), sig, vec["content_type"], bytes.fromhex(vec["tbs_hex"]))  # type: ignore[arg-type]


def test_ecdsa_signature_vector_is_low_s_and_its_twin_is_refused() -> None:
    """The pinned ECDSA vector is low-S; (r, n - s), which verifies in plain ECDSA, is refused."""
    v = _load("signatures.json")
    assert isinstance(v, list)
    vec = v[0]
    assert vec["alg"] == "ecdsa-p256-sha256"
    value = bytes.fromhex(vec["signature_hex"])
    assert not is_high_s(value)
    r, s = decode_dss_signature(value)
    twin = crypto_pb2.Signature(alg=vec["alg"], value=encode_dss_signature(r, P256_ORDER - s))
    key = serialization.load_pem_private_key(vec["key_pem"].encode(), None)
    with pytest.raises(ProtocolError) as caught:
        verify_signature(key.public_key(), twin, vec["content_type"], bytes.fromhex(vec["tbs_hex"]))  # type: ignore[arg-type]
    assert caught.value.code == ErrorCode.ERROR_CODE_SIGNATURE_FAILURE
    assert "s above n/2" in caught.value.reason
