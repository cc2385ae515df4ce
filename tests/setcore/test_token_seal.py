"""Tokens the gateway seals to itself: one master key per seed, every check on opening."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from hsm.base import KeyBackend, KeyHandle, KeyUsage
from setcore.envelope import AEAD_ALG
from setcore.errors import ConfigurationError, ErrorCode, ProtocolError
from setcore.profiles import PROFILES, Profile
from setcore.token_seal import SALT_BYTES, TOKEN_KEM, TokenKey
from setpay.v1 import crypto_pb2

CT = "setpay.v1.CapTokenData"
XID, RRPID = os.urandom(32), os.urandom(32)
PLAINTEXT = b"a capture token's data"


@pytest.fixture(scope="module")
def sealing_keys(backend: KeyBackend) -> dict[str, KeyHandle]:
    """Per profile: a token-sealing key (RSA keygen is slow: made once)."""
    return {
        name: backend.generate(
            f"{name}-token-{os.urandom(4).hex()}", KeyUsage.TOKEN_SEALING, p.key_exchange_key
        )
        for name, p in PROFILES.items()
    }


@pytest.fixture
def token_key(
    backend: KeyBackend, sealing_keys: dict[str, KeyHandle], profile: Profile
) -> TokenKey:
    return TokenKey.create(backend, sealing_keys[profile.name])


def _sealed(token_key: TokenKey) -> crypto_pb2.Sealed:
    return token_key.seal(CT, PLAINTEXT, xid=XID, rrpid=RRPID)


def _refused(code: int, call: Callable[[], object]) -> None:
    with pytest.raises(ProtocolError) as caught:
        call()
    assert caught.value.code == code, caught.value


def test_a_sealed_token_opens_with_the_same_seed_in_another_process(
    backend: KeyBackend, token_key: TokenKey
) -> None:
    sealed = _sealed(token_key)
    # Another worker derives its master key from the stored seed through the backend.
    worker = TokenKey.from_handle(backend, token_key.key, token_key.seed)
    assert worker.open(crypto_pb2.Sealed.FromString(sealed.SerializeToString()), CT) == PLAINTEXT
    assert (sealed.kem_alg, sealed.aead_alg, sealed.xid, sealed.rrpid) == (
        TOKEN_KEM, AEAD_ALG, XID, RRPID,
    )  # fmt: skip
    assert PLAINTEXT not in sealed.SerializeToString()


def test_every_token_has_its_own_salt_and_nonce(token_key: TokenKey) -> None:
    first, second = _sealed(token_key), _sealed(token_key)
    assert len(first.kem_ciphertext) == SALT_BYTES
    assert first.kem_ciphertext != second.kem_ciphertext
    assert first.ciphertext != second.ciphertext


def test_a_token_under_another_seed_is_refused(backend: KeyBackend, token_key: TokenKey) -> None:
    other = TokenKey.create(backend, token_key.key)
    _refused(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, lambda: other.open(_sealed(token_key), CT))


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "kem_ciphertext", "xid", "rrpid"])
def test_a_changed_byte_is_refused(token_key: TokenKey, field: str) -> None:
    sealed = _sealed(token_key)
    value = bytearray(getattr(sealed, field))
    value[0] ^= 1
    setattr(sealed, field, bytes(value))
    _refused(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, lambda: token_key.open(sealed, CT))


def test_another_kem_or_aead_is_refused(token_key: TokenKey) -> None:
    sealed = _sealed(token_key)
    sealed.kem_alg = "p256-hkdf-sha256"
    _refused(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, lambda: token_key.open(sealed, CT))
    sealed = _sealed(token_key)
    sealed.aead_alg = "aes-128-gcm"
    _refused(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, lambda: token_key.open(sealed, CT))


def test_another_content_type_or_an_extra_part_is_refused(token_key: TokenKey) -> None:
    sealed = _sealed(token_key)
    _refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE,
        lambda: token_key.open(sealed, "setpay.v1.AuthTokenData"),
    )
    sealed.extra_content_type = "setpay.v1.PANData"
    _refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, lambda: token_key.open(sealed, CT))


def test_a_short_salt_is_refused(token_key: TokenKey) -> None:
    sealed = _sealed(token_key)
    sealed.kem_ciphertext = sealed.kem_ciphertext[:-1]
    _refused(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, lambda: token_key.open(sealed, CT))


def test_a_seed_the_key_cannot_open_is_refused_at_start(
    backend: KeyBackend, sealing_keys: dict[str, KeyHandle]
) -> None:
    for key in sealing_keys.values():
        with pytest.raises(ConfigurationError, match="does not open"):
            TokenKey.from_handle(backend, key, b"\x04" + b"\x00" * 10)


def test_a_signature_key_cannot_seal_tokens(backend: KeyBackend, profile: Profile) -> None:
    key = backend.generate(
        f"token-sig-{os.urandom(4).hex()}", KeyUsage.SIGNATURE, profile.signature_key
    )
    with pytest.raises(ConfigurationError, match="decapsulation key"):
        TokenKey.create(backend, key)


def test_the_master_key_is_not_in_the_repr(token_key: TokenKey) -> None:
    assert token_key.master.hex() not in repr(token_key)
    assert repr(token_key.master) not in repr(token_key)


@pytest.mark.parametrize(
    ("field", "value"),
    [("xid", b"x" * 70000), ("rrpid", b"r" * 70000), ("xid", b"x" * 31)],
    ids=["xid-70000", "rrpid-70000", "xid-31"],
)
def test_an_id_of_another_length_is_refused(token_key: TokenKey, field: str, value: bytes) -> None:
    sealed = _sealed(token_key)
    setattr(sealed, field, value)  # anyone can: the ids travel outside the AEAD
    _refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, lambda: token_key.open(sealed, CT))
