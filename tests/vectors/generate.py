"""Regenerate the known-answer vectors in this directory (run only on purpose).

    .venv/bin/python tests/vectors/generate.py [FILE.json ...]

The vectors pin setpay's byte-level framing: a change to a digest label, to the order of
the AEAD associated data or to the KDF info makes ``tests/setcore/test_vectors.py``
fail, so the wire contract cannot drift silently. ``pan.json``, ``ledger.json`` and
``stored.json`` pin what outlives a release: the blinded account inside every cardholder
certificate, the ledger's PAN index and sealed PANs, capture tokens a merchant holds and
envelopes opened later (``tests/setcore/test_vectors_stored.py``,
``tests/gateway/ledger/test_ledger_vectors.py``); a change there strands stored data.
The keys here are test keys, made for these vectors only.

Name the files to rewrite: envelopes, signatures, ledger and stored vectors hold fresh
keys and random nonces, so rewriting one that did not need it only churns its pins.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gateway.ledger.pan import LedgerKeys, card_refusals_key, pan_index, seal_pan
from hsm.base import KemAlgorithm, KeyUsage
from hsm.software import SoftwareBackend
from setcore.encoding import (
    aead_associated_data,
    digest,
    digest_parts,
    signature_input,
    thumbprint,
)
from setcore.envelope import Recipient, seal, seal_with_key
from setcore.link import link_content_type
from setcore.pan import PAN, blinded_account, luhn_valid, pan_secret, trans_stain
from setcore.purchase import hod
from setcore.signed import PSS_SALT_BYTES, low_s
from setcore.token_seal import TokenKey
from setpay.v1 import common_pb2

HERE = Path(__file__).parent
# The vectors' card: a test BIN and a serial, completed with its Luhn digit as
# ``tests.cards.card`` does (no file spells a card number out).
CARD = {"bin": "499998", "serial": 7, "expiry": "203012"}
XID, RRPID = b"\x02" * 32, b"\x03" * 32


def _card_digits() -> str:
    body = f"{CARD['bin']}{CARD['serial']:09d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


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
        # Wallet and merchant each compute HOD; the gateway compares the two.
        "hod": {
            "od_hex": b"order description".hex(),
            "currency": 978,
            "amount": 1999,
            "exp10": 2,
            "od_salt_hex": (b"\x05" * 32).hex(),
            "expected_hex": hod(
                b"order description",
                common_pb2.CurrencyAmount(currency=978, amount=1999, exp10=2),
                b"\x05" * 32,
            ).hex(),
        },
        # The content type an EncB's signed Link is signed and sealed under.
        "link_content_type": {
            "t1_content_type": "setpay.v1.AuthReqData",
            "expected": link_content_type("setpay.v1.AuthReqData"),
        },
    }


def pan_secrets() -> dict[str, object]:
    card_secret, nonce_cca, xid = b"\x11" * 32, b"\x22" * 32, b"\x33" * 32
    secret = pan_secret(card_secret, nonce_cca)
    account = blinded_account(secret, PAN(_card_digits()), str(CARD["expiry"]))
    return {
        "card": CARD,
        "pan_secret": {"card_secret_hex": card_secret.hex(), "nonce_cca_hex": nonce_cca.hex(),
                       "expected_hex": secret.hex()},
        "blinded_account": {"pan_secret_hex": secret.hex(), "expected_hex": account.hex()},
        "trans_stain": {"card_secret_hex": card_secret.hex(), "xid_hex": xid.hex(),
                        "expected_hex": trans_stain(card_secret, xid).hex()},
    }  # fmt: skip


def ledger() -> dict[str, object]:
    keys = LedgerKeys(data_key=b"\x0d" * 32, index_key=b"\x0e" * 32)
    pan = _card_digits()
    return {
        "card": CARD, "data_key_hex": keys.data_key.hex(), "index_key_hex": keys.index_key.hex(),
        "pan_index_hex": pan_index(keys, pan).hex(),
        "card_refusals_hex": card_refusals_key(keys, pan).hex(),
        "account_id": "card-1", "sealed_pan_hex": seal_pan(keys, "card-1", pan).hex(),
    }  # fmt: skip


def _token() -> dict[str, object]:
    backend = SoftwareBackend.ephemeral()
    key = ec.generate_private_key(ec.SECP256R1())
    token_key = TokenKey.create(backend, backend.import_key("kat", KeyUsage.TOKEN_SEALING, key))
    token = token_key.seal("setpay.v1.CapTokenData", b"capture token", xid=XID, rrpid=RRPID)
    return {
        "key_pem": _pem(key), "seed_hex": token_key.seed.hex(),
        "key_id_hex": token_key.key_id.hex(), "master_hex": token_key.master.hex(),
        "content_type": "setpay.v1.CapTokenData", "xid_hex": XID.hex(), "rrpid_hex": RRPID.hex(),
        "sealed_hex": token.SerializeToString().hex(), "plaintext_hex": b"capture token".hex(),
    }  # fmt: skip


def stored() -> dict[str, object]:
    # RSA-OAEP with SHA-1: the key transport of a SoftHSM-held gateway key.
    key, thumb = rsa.generate_private_key(65537, 2048), b"\x07" * 32
    recipient = Recipient(key.public_key(), thumb, KemAlgorithm.RSA_OAEP_SHA1)
    sealed = seal(
        "setpay.v1.PITBE", b"sealed body", recipient,
        xid=XID, rrpid=RRPID, extra=("setpay.v1.PANData", b"extra part"),
    )  # fmt: skip
    back_key = b"\x0b" * 32
    key_sealed = seal_with_key("setpay.v1.CertResData", b"cert res", back_key, rrpid=RRPID)
    return {
        "token": _token(),
        "rsa_oaep_sha1": {
            "kem": KemAlgorithm.RSA_OAEP_SHA1.value, "recipient_key_pem": _pem(key),
            "recipient_thumb_hex": thumb.hex(), "sealed_hex": sealed.SerializeToString().hex(),
            "plaintext_hex": b"sealed body".hex(), "extra_hex": b"extra part".hex(),
        },
        "key_sealed": {
            "back_key_hex": back_key.hex(), "content_type": "setpay.v1.CertResData",
            "rrpid_hex": RRPID.hex(), "sealed_hex": key_sealed.SerializeToString().hex(),
            "plaintext_hex": b"cert res".hex(),
        },
    }  # fmt: skip


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


FILES: dict[str, Callable[[], object]] = {
    "framing.json": framing,
    "envelopes.json": envelopes,
    "signatures.json": signatures,
    "pan.json": pan_secrets,
    "ledger.json": ledger,
    "stored.json": stored,
}


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(FILES)
    unknown = sorted(set(names) - set(FILES))
    if unknown:
        sys.exit(f"no such vector file: {', '.join(unknown)} (one of {', '.join(sorted(FILES))})")
    for name in names:
        (HERE / name).write_text(json.dumps(FILES[name](), indent=2) + "\n")
    print("vectors written:", ", ".join(names))
