"""ECDSA signatures come out low-S (s <= n/2) from every backend, and from setcore.

For every valid ECDSA signature (r, s), (r, n - s) verifies too; setcore refuses the high
one as a malleable twin. The PKCS#11 backend gets r || s from the token, and the software
backend gets a signature from OpenSSL; either may pick either s, and each backend returns
the low one, as ``KeyBackend.sign`` promises. setcore's signer (``setcore.signed.sign``)
makes every SET signature low-S even from a backend that broke that promise: checked here
behind ``HighSBackend``, which turns every signature into its high-S twin.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hsm.base import KeyAlgorithm, KeyBackend, KeyUsage
from hsm.policy import P256_ORDER as POLICY_P256_ORDER
from hsm.policy import low_s_signature
from hsm.software import SoftwareBackend
from setcore.signed import sign, verify_signature
from tests.setcore.high_s import P256_ORDER, HighSBackend, is_high_s, s_of

from .keycheck import verify
from .testbed import BackendFactory

# A signer choosing s at random gives a high one with probability 1/2 each time: 200 in
# a row low by chance is 2**-200. SoftHSM signs a few thousand a second, so this is quick.
SIGNATURES = 200


def test_every_backend_returns_low_s_signatures(backend_factory: BackendFactory) -> None:
    """The backend's own ``sign``, not setcore's. Before, the software backend returned
    OpenSSL's choice: high about half the time."""
    backend: KeyBackend = backend_factory.open()
    try:
        key = backend.generate("low-s", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        for n in range(SIGNATURES):
            data = n.to_bytes(4, "big")
            signature = backend.sign(key, data)
            assert s_of(signature) <= P256_ORDER // 2, (backend_factory.kind, n)
            verify(key.public_key, signature, data)  # the low one is a valid signature too
    finally:
        backend.close()


def test_setcore_signs_low_s_even_from_a_backend_that_returns_high_s() -> None:
    """Through a backend whose every signature is high-S: what setcore sends is low-S all
    the same (and verifies), so its own normalization is what is tested, not the
    backend's. Without it, every one of these would be high.

    Once, on one backend: ``HighSBackend`` turns whatever s the backend behind it chose
    into the high one, so setcore sees the same input from every kind, and that every
    kind returns low-S of its own is ``test_every_backend_returns_low_s_signatures``."""
    inner = SoftwareBackend.ephemeral()
    try:
        backend = HighSBackend(inner)
        key = backend.generate("low-s", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        assert is_high_s(backend.sign(key, b"the double works"))
        for n in range(SIGNATURES):
            tbs = n.to_bytes(4, "big")
            signed = sign(backend, key, b"\x01" * 32, "setpay.v1.Test", tbs)
            signature = signed.signatures[0]
            assert s_of(signature.value) <= P256_ORDER // 2, n
            verify_signature(key.public_key, signature, "setpay.v1.Test", tbs)
    finally:
        inner.close()


def test_the_one_rule_both_backends_apply_keeps_a_low_s_and_turns_a_high_one_low() -> None:
    """``hsm.policy.low_s_signature``, which each backend calls with the (r, s) it got: at
    the half order and on either side of it."""
    assert POLICY_P256_ORDER == P256_ORDER
    half = P256_ORDER // 2
    for s in (1, half):
        assert decode_dss_signature(low_s_signature(7, s)) == (7, s)
    for s in (half + 1, P256_ORDER - 1):
        assert decode_dss_signature(low_s_signature(7, s)) == (7, P256_ORDER - s)
