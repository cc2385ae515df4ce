"""The RSA keys the allow-list accepts: RSA-2048 and RSA-3072 with e = 65537, nothing else.

A verification with an RSA key costs a modular multiplication per bit of its public
exponent and grows with the square of its modulus: a key of a huge e or modulus, accepted
once, makes every later check of it cost tens of normal ones. The keys here are public
keys over random odd moduli of the exact size: the allow-list reads sizes and exponents,
never factors, and a real RSA-8192 key would take seconds to generate.
"""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hsm.errors import UnsupportedAlgorithm
from hsm.policy import RSA_PUBLIC_EXPONENT, algorithm_to_hold
from setcore.encoding import signature_input
from setcore.errors import ProtocolError
from setcore.signed import algorithm_for_public_key, verify_signature
from setpay.v1 import crypto_pb2

from .refusals import code_name

CT = "setpay.v1.PInitResData"
# An exponent of nearly the modulus's size, the costliest OpenSSL accepts at RSA-3072 (it
# bounds e only above that size).
HUGE_EXPONENT = (1 << 3070) + 1


def public_key(bits: int, exponent: int = RSA_PUBLIC_EXPONENT) -> rsa.RSAPublicKey:
    """An RSA public key of exactly ``bits`` bits and exponent ``exponent``."""
    modulus = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


@pytest.mark.parametrize("bits", [2048, 3072])
def test_the_backends_sizes_with_e_65537_are_allowed(bits: int) -> None:
    assert algorithm_for_public_key(public_key(bits)).value == "rsa-pss-sha256"


@pytest.mark.parametrize(
    ("bits", "exponent"),
    [
        (3072, HUGE_EXPONENT),
        (2048, 65539),
        (2048, 3),
        (4096, RSA_PUBLIC_EXPONENT),
        (8192, RSA_PUBLIC_EXPONENT),
        (1024, RSA_PUBLIC_EXPONENT),
    ],
    ids=["rsa3072-huge-e", "rsa2048-e65539", "rsa2048-e3", "rsa4096", "rsa8192", "rsa1024"],
)
def test_other_exponents_and_sizes_are_refused(bits: int, exponent: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        algorithm_for_public_key(public_key(bits, exponent))
    assert code_name(caught) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"


def test_a_huge_exponent_is_refused_before_the_signature_is_verified() -> None:
    # The refusal is the allow-list's, not a bad signature's: the costly verification
    # never runs.
    signature = crypto_pb2.Signature(alg="rsa-pss-sha256", value=b"\x01" * 384)
    with pytest.raises(ProtocolError) as caught:
        verify_signature(public_key(3072, HUGE_EXPONENT), signature, CT, b"tbs")
    assert code_name(caught) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"


def test_a_good_key_still_verifies() -> None:
    key = rsa.generate_private_key(RSA_PUBLIC_EXPONENT, 2048)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    value = key.sign(signature_input(CT, "rsa-pss-sha256", b"tbs"), pss, hashes.SHA256())
    signature = crypto_pb2.Signature(alg="rsa-pss-sha256", value=value)
    verify_signature(key.public_key(), signature, CT, b"tbs")


@pytest.mark.parametrize(
    ("bits", "exponent"),
    [
        (1024, RSA_PUBLIC_EXPONENT),
        (2048, RSA_PUBLIC_EXPONENT),
        (3072, RSA_PUBLIC_EXPONENT),
        (4096, RSA_PUBLIC_EXPONENT),
        (2048, 3),
        (2048, 65539),
        (3072, HUGE_EXPONENT),
    ],
    ids=["rsa1024", "rsa2048", "rsa3072", "rsa4096", "rsa2048-e3", "rsa2048-e65539", "huge-e"],
)
def test_the_sizes_are_the_ones_a_backend_holds(bits: int, exponent: int) -> None:
    # setcore's allow-list and what a backend takes in (import, adopt) cannot drift apart:
    # a key a backend would refuse to hold is refused from a peer too, and the other way
    # round. A key of another exponent used to be imported, then refused by every peer.
    key = public_key(bits, exponent)
    try:
        algorithm_to_hold(key)
        held = True
    except UnsupportedAlgorithm:
        held = False
    try:
        algorithm_for_public_key(key)
        allowed = True
    except ProtocolError:
        allowed = False
    assert allowed is held
