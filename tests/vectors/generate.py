"""Regenerate the known-answer vectors in this directory (run only on purpose).

    .venv/bin/python tests/vectors/generate.py

The vectors pin setpay's byte-level framing: a change to a digest label, to the order of
the AEAD associated data or to the KDF info makes ``tests/setcore/test_vectors.py``
fail, so the wire contract cannot drift silently. The keys here are test keys, made for
these vectors only.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hsm.base import KemAlgorithm
from setcore.encoding import (
    aead_associated_data,
    digest,
    digest_parts,
    signature_input,
    thumbprint,
)
from setcore.envelope import Recipient, seal
from setcore.signed import PSS_SALT_BYTES, low_s

HERE = Path(__file__).parent


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def framing() -> dict[str, object]:
    return {
        "digest": {
            "content_type": "setpay.v1.OIData",
            "data_hex": b"order information".hex(),
            "expected_hex": digest("setpay.v1.OIData", b"order information").hex(),
        },
        "digest_parts": {
            "content_type": "setpay.v1.PIData",
            "parts_hex": [b"pi head".hex(), b"".hex(), b"pan data".hex()],
            "expected_hex": digest_parts("setpay.v1.PIData", [b"pi head", b"", b"pan data"]).hex(),
        },
        "signature_input": {
            "content_type": "setpay.v1.PITBS",
            "tbs_hex": b"\x0a\x01x".hex(),
            "algorithm": "ecdsa-p256-sha256",
            "expected_hex": signature_input(
                "setpay.v1.PITBS", "ecdsa-p256-sha256", b"\x0a\x01x"
            ).hex(),
        },
        "aead_associated_data": {
            "content_type": "setpay.v1.PITBE",
            "part": "extra:setpay.v1.PANData",
            "recipient_hex": (b"\x01" * 32).hex(),
            "xid_hex": (b"\x02" * 32).hex(),
            "rrpid_hex": (b"\x03" * 32).hex(),
            "expected_hex": aead_associated_data(
                "setpay.v1.PITBE",
                "extra:setpay.v1.PANData",
                b"\x01" * 32,
                b"\x02" * 32,
                b"\x03" * 32,
            ).hex(),
        },
        "thumbprint": {
            "der_hex": b"0\x03\x02\x01\x01".hex(),
            "expected_hex": thumbprint(b"0\x03\x02\x01\x01").hex(),
        },
    }


def envelopes() -> list[dict[str, object]]:
    out = []
    for kem, key in (
        (KemAlgorithm.P256_HKDF_SHA256, ec.generate_private_key(ec.SECP256R1())),
        (KemAlgorithm.RSA_OAEP_SHA256, rsa.generate_private_key(65537, 2048)),
    ):
        thumb = b"\x07" * 32
        sealed = seal(
            "setpay.v1.PITBE", b"sealed body", Recipient(key.public_key(), thumb, kem),
            xid=b"\x02" * 32, rrpid=b"\x03" * 32, extra=("setpay.v1.PANData", b"extra part"),
        )  # fmt: skip
        out.append({
            "kem": kem.value, "recipient_key_pem": _pem(key), "recipient_thumb_hex": thumb.hex(),
            "sealed_hex": sealed.SerializeToString().hex(),
            "plaintext_hex": b"sealed body".hex(), "extra_hex": b"extra part".hex(),
        })  # fmt: skip
    return out


def signatures() -> list[dict[str, object]]:
    out = []
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(65537, 2048)
    data = signature_input("setpay.v1.PInitResData", "ecdsa-p256-sha256", b"tbs")
    # Low-S: setpay refuses the high-S twin of an ECDSA signature (setcore.signed).
    value = low_s(ec_key.sign(data, ec.ECDSA(hashes.SHA256())))
    out.append({"alg": "ecdsa-p256-sha256", "key_pem": _pem(ec_key),
                "content_type": "setpay.v1.PInitResData", "tbs_hex": b"tbs".hex(),
                "signature_hex": value.hex()})  # fmt: skip
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_BYTES)
    data = signature_input("setpay.v1.PInitResData", "rsa-pss-sha256", b"tbs")
    out.append({"alg": "rsa-pss-sha256", "key_pem": _pem(rsa_key),
                "content_type": "setpay.v1.PInitResData", "tbs_hex": b"tbs".hex(),
                "signature_hex": rsa_key.sign(data, pss, hashes.SHA256()).hex()})  # fmt: skip
    return out


if __name__ == "__main__":
    (HERE / "framing.json").write_text(json.dumps(framing(), indent=2) + "\n")
    (HERE / "envelopes.json").write_text(json.dumps(envelopes(), indent=2) + "\n")
    (HERE / "signatures.json").write_text(json.dumps(signatures(), indent=2) + "\n")
    print("vectors written")
