"""Known-answer vectors for what outlives a release: data made once and read for years.

A cardholder certificate carries the blinded account; a merchant holds capture tokens
until it captures; a gateway key on a token opens RSA-OAEP envelopes with SHA-1; a
wallet opens the CA's answer under its back key. Each vector was made once by
``tests/vectors/generate.py``: a label, KDF info or associated data that drifts fails
here before it strands what is already stored.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hsm.base import KemAlgorithm, KeyUsage
from hsm.pkcs11 import Pkcs11Backend
from hsm.software import SoftwareBackend
from setcore.envelope import open_sealed, open_with_key
from setcore.pan import PAN, blinded_account, pan_secret, trans_stain
from setcore.token_seal import TokenKey
from setpay.v1 import crypto_pb2
from tests.cards import card
from tests.hsm.testbed import session_softhsm

VECTORS = Path(__file__).parent.parent / "vectors"


def _load(name: str) -> dict[str, dict[str, object]]:
    loaded = json.loads((VECTORS / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def _hex(vector: dict[str, object], name: str) -> bytes:
    value = vector[name]
    assert isinstance(value, str)
    return bytes.fromhex(value)


@pytest.fixture
def token_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pkcs11Backend]:
    """A PKCS#11 backend on a fresh SoftHSM token: the OAEP with SHA-1 of a real token."""
    token = session_softhsm(tmp_path_factory).init_token()
    backend = Pkcs11Backend(token.config())
    yield backend
    backend.close()
    shutil.rmtree(token.directory, ignore_errors=True)


def test_pan_secret_vector() -> None:
    """PANSecret: the wallet and the CA each compute it from CardSecret and Nonce-CCA."""
    d = _load("pan.json")["pan_secret"]
    secret = pan_secret(_hex(d, "card_secret_hex"), _hex(d, "nonce_cca_hex"))
    assert secret.hex() == d["expected_hex"]


def test_blinded_account_vector() -> None:
    """The blinded account is inside every issued cardholder certificate: the gateway
    recomputes it from the PANData of each purchase."""
    v = _load("pan.json")
    c, d = v["card"], v["blinded_account"]
    pan = PAN(card(str(c["bin"]), int(str(c["serial"]))))
    account = blinded_account(_hex(d, "pan_secret_hex"), pan, str(c["expiry"]))
    assert account.hex() == d["expected_hex"]


def test_trans_stain_vector() -> None:
    """TransStain: in every PIHead; only the CardSecret's holders can make it again."""
    d = _load("pan.json")["trans_stain"]
    assert trans_stain(_hex(d, "card_secret_hex"), _hex(d, "xid_hex")).hex() == d["expected_hex"]


def test_stored_capture_token_opens() -> None:
    """A token sealed by an earlier release opens: master key info, per-token info and
    associated data all stay as they were."""
    d = _load("stored.json")["token"]
    backend = SoftwareBackend.ephemeral()
    key = serialization.load_pem_private_key(str(d["key_pem"]).encode(), None)
    handle = backend.import_key("kat", KeyUsage.TOKEN_SEALING, key)  # type: ignore[arg-type]
    token_key = TokenKey.from_handle(backend, handle, _hex(d, "seed_hex"))
    assert token_key.key_id.hex() == d["key_id_hex"]
    assert token_key.master.hex() == d["master_hex"]
    sealed = crypto_pb2.Sealed.FromString(_hex(d, "sealed_hex"))
    assert (sealed.xid, sealed.rrpid) == (_hex(d, "xid_hex"), _hex(d, "rrpid_hex"))
    assert token_key.open(sealed, str(d["content_type"])).hex() == d["plaintext_hex"]


def test_stored_back_key_envelope_opens() -> None:
    """EncK: the wallet opens the CA's answer under the back key it chose, with the
    "back-key" associated data both ends build apart."""
    d = _load("stored.json")["key_sealed"]
    sealed = crypto_pb2.KeySealed.FromString(_hex(d, "sealed_hex"))
    opened = open_with_key(
        sealed, _hex(d, "back_key_hex"), str(d["content_type"]), rrpid=_hex(d, "rrpid_hex")
    )
    assert opened.hex() == d["plaintext_hex"]


@pytest.mark.integration
def test_rsa_oaep_sha1_envelope_opens_on_a_token(token_backend: Pkcs11Backend) -> None:
    """The key transport of a SoftHSM-held key (OAEP with SHA-1), opened on the token."""
    d = _load("stored.json")["rsa_oaep_sha1"]
    key = serialization.load_pem_private_key(str(d["recipient_key_pem"]).encode(), None)
    handle = token_backend.import_key("kat", KeyUsage.KEY_EXCHANGE, key)  # type: ignore[arg-type]
    assert handle.kem is KemAlgorithm.RSA_OAEP_SHA1
    assert d["kem"] == handle.kem.value
    sealed = crypto_pb2.Sealed.FromString(_hex(d, "sealed_hex"))
    opened = open_sealed(
        sealed, token_backend, handle, _hex(d, "recipient_thumb_hex"), "setpay.v1.PITBE",
        extra_type="setpay.v1.PANData",
    )  # fmt: skip
    assert opened.plaintext.hex() == d["plaintext_hex"]
    assert opened.extra is not None and opened.extra.hex() == d["extra_hex"]
