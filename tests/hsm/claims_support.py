"""Key versions two keys claim, and keys refused for a while, made on a real token.

Objects are made straight through the PKCS#11 library, as a process holding another key
lock (or anyone reaching the token's public objects) would make them.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import ObjectClass

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_catalog import objects
from hsm.token_objects import import_attributes, metadata_attributes
from hsm.token_session import TokenSession


def claim_on(session: TokenSession, label: str, version: int, ck_id: bytes) -> Any:
    """Make on ``session`` a P-256 signature key claiming ``label`` v``version`` under
    ``ck_id``, as a process holding another key lock would; its private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = import_attributes(label, ck_id, KeyUsage.SIGNATURE, key)
    metadata = metadata_attributes(
        label, version, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256, ck_id, key.public_key()
    )
    for template in (metadata, private, public):
        session.session.create_object(template)
    return key


def claim_again(backend: Pkcs11Backend, label: str, version: int, ck_id: bytes) -> Any:
    """``claim_on`` through ``backend``'s link; the second key's private key."""
    return backend._link.run(
        lambda session: claim_on(session, label, version, ck_id),
        "make a key as a racing process would",
        retry=False,
    )


def remove_public_object(backend: Pkcs11Backend, ck_id: bytes) -> None:
    """Destroy the public key object under ``ck_id`` (a session without the PIN can):
    the key is refused until a public object holding its key is back."""

    def remove(session: TokenSession) -> None:
        (public,) = objects(session, (ObjectClass.PUBLIC_KEY,), {ck_id})
        public.destroy()

    backend._link.run(remove, "remove a public key object", retry=False)
    backend._link.invalidate_objects()


def put_public_object_back(
    backend: Pkcs11Backend, label: str, ck_id: bytes, key: ec.EllipticCurvePrivateKey
) -> None:
    """Make again the public key object of ``key`` (imported as ``label`` under ``ck_id``)."""
    _, public = import_attributes(label, ck_id, KeyUsage.SIGNATURE, key)
    backend._link.run(
        lambda session: session.session.create_object(public), "put a public key object back"
    )
