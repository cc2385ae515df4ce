"""What the authorization path makes for every request, made more cheaply, gives what it
gave: the credentials a gateway opens one request's envelopes with (a shallow copy with
its own chooser, ``Credentials.choosing_key_exchange``), and the framing bytes of a
content type (kept once made, ``setcore.encoding``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from hsm.base import KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.credentials import Credentials
from setcore.encoding import aead_associated_data, digest, digest_parts, signature_input
from setcore.pki.extensions import kem_extension
from setcore.pki.issuance import key_usage
from tests.hsm.keycheck import certificate_for


@pytest.fixture
def backend() -> Iterator[KeyBackend]:
    with SoftwareBackend.ephemeral() as made:
        yield made


def _credentials(backend: KeyBackend) -> Credentials:
    signing = backend.generate("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    kex = backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    assert kex.kem is not None
    return Credentials(
        backend,
        signing,
        certificate_for(signing.public_key, "sig", extensions=[(key_usage(signature=True), True)]),
        chain=(b"ca-certificate",),
        key_exchange_key=kex,
        key_exchange_cert=certificate_for(
            kex.public_key,
            "kex",
            extensions=[(key_usage(agree=True), True), (kem_extension(kex.kem), False)],
        ),
        earlier_signature_thumbs=frozenset({b"\x01" * 32}),
    )


def test_chosen_credentials_are_a_copy_with_their_own_chooser(backend: KeyBackend) -> None:
    made = _credentials(backend)
    picked: list[bytes] = []

    def chooser(thumb: bytes) -> tuple[KeyHandle, bytes]:
        picked.append(thumb)
        return made.require_key_exchange()

    chosen = made.choosing_key_exchange(chooser)
    assert type(chosen) is Credentials and chosen is not made
    # Every field as it was, the computed ones (thumbprints, bundle) not made again.
    for each in dataclasses.fields(Credentials):
        if each.name != "key_exchange_chooser":
            assert getattr(chosen, each.name) is getattr(made, each.name), each.name
    assert chosen.bundle() == made.bundle()
    assert chosen.key_exchange_chooser is chooser
    assert chosen.key_exchange_for(b"sealed-to") == made.require_key_exchange()
    assert picked == [b"sealed-to"]
    # The original is left as it was, and is still frozen; so is the copy.
    assert made.key_exchange_chooser is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        chosen.key_exchange_chooser = None  # type: ignore[misc]


def test_a_copy_of_a_copy_chooses_anew(backend: KeyBackend) -> None:
    made = _credentials(backend)
    first = made.choosing_key_exchange(lambda thumb: made.require_key_exchange())
    second = first.choosing_key_exchange(lambda thumb: (made.signature_key, b"other"))
    assert second.key_exchange_for(b"t") == (made.signature_key, b"other")
    assert first.key_exchange_for(b"t") == made.require_key_exchange()


@pytest.mark.parametrize("content_type", ["", "setpay.v1.Bad\x00Type", "setpay.v1.Ünicode"])
def test_a_refused_content_type_is_refused_every_time(content_type: str) -> None:
    # A refusal is never kept as if it were framing: the second call refuses too.
    for _ in range(2):
        with pytest.raises((ValueError, UnicodeEncodeError)):
            digest(content_type, b"data")


def test_framing_is_the_same_bytes_each_time() -> None:
    ct = "setpay.v1.AuthReqData"
    assert digest(ct, b"x") == digest(ct, b"x") != digest(ct + "2", b"x")
    assert signature_input(ct, "ecdsa-p256-sha256", b"t") == (
        b"setpay/v1 SIG\x00setpay.v1.AuthReqData\x00ecdsa-p256-sha256\x00t"
    )
    assert aead_associated_data(ct, "body", b"r", b"", b"") == aead_associated_data(
        ct, "body", b"r", b"", b""
    )
    assert digest_parts(ct, [b"a", b""]) != digest_parts(ct, [b"", b"a"])
