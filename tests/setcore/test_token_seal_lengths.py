"""A capture token whose salt or AEAD nonce is not of its one length is refused by that
length check, as a SET Error naming it: tokens come back from the merchant (CapReq,
AuthRevReq, CapRevReq and CredReq baggage), and AES-GCM would take other nonces of 8 to
128 bytes (failing the tag) and raise ValueError on the rest, not a ProtocolError."""

from __future__ import annotations

import os

import pytest

from hsm.base import KeyBackend, KeyHandle, KeyUsage
from setcore.errors import ErrorCode
from setcore.profiles import PROFILES, Profile
from setcore.token_seal import SALT_BYTES, TokenKey
from setpay.v1 import crypto_pb2

from .refusals import refused

CT = "setpay.v1.CapTokenData"


@pytest.fixture(scope="module")
def sealing_keys(backend: KeyBackend) -> dict[str, KeyHandle]:
    """Per profile: a token-sealing key (RSA keygen is slow: made once)."""
    return {
        name: backend.generate(
            f"{name}-token-{os.urandom(4).hex()}", KeyUsage.TOKEN_SEALING, p.key_exchange_key
        )
        for name, p in PROFILES.items()
    }


def _sealed(
    backend: KeyBackend, sealing_keys: dict[str, KeyHandle], profile: Profile
) -> tuple[TokenKey, crypto_pb2.Sealed]:
    """A token key of ``profile`` and a token it sealed (one that opens)."""
    token_key = TokenKey.create(backend, sealing_keys[profile.name])
    sealed = token_key.seal(CT, b"a capture token's data", xid=os.urandom(32), rrpid=os.urandom(32))
    assert token_key.open(crypto_pb2.Sealed.FromString(sealed.SerializeToString()), CT)
    return token_key, sealed


@pytest.mark.parametrize("nonce_bytes", [0, 7, 11, 13])
def test_a_token_nonce_of_another_length_is_refused(
    backend: KeyBackend, sealing_keys: dict[str, KeyHandle], profile: Profile, nonce_bytes: int
) -> None:
    token_key, sealed = _sealed(backend, sealing_keys, profile)
    sealed.nonce = bytes(nonce_bytes)
    reason = refused(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, token_key.open, sealed, CT)
    assert reason == "bad nonce length"


@pytest.mark.parametrize("salt_bytes", [0, SALT_BYTES - 1, SALT_BYTES + 1])
def test_a_token_salt_of_another_length_is_refused(
    backend: KeyBackend, sealing_keys: dict[str, KeyHandle], profile: Profile, salt_bytes: int
) -> None:
    token_key, sealed = _sealed(backend, sealing_keys, profile)
    sealed.kem_ciphertext = bytes(salt_bytes)
    reason = refused(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, token_key.open, sealed, CT)
    assert reason == "bad salt length"
