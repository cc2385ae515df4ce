"""Which key versions are on a token: read from its objects, kept in memory, refreshed.

The catalog is rebuilt from the token (setpay data objects, private and public keys;
see ``hsm.token_objects`` for their shape) on open, on every ``list_keys``, after every
change, and when a lookup misses (another process may have added the key). While
rebuilding it also settles, once per token, which OAEP variant the token decrypts: it
encrypts a random value in software to the first RSA decryption key it finds and asks
the token to decrypt it with SHA-256 parameters, then SHA-1 (SoftHSM 2.6 refuses SHA-256
with CKR_ARGUMENTS_BAD). Never OAEP decoding in Python over raw RSA.

Errors raised: ``KeyNotFound``, ``PermanentBackendError``, and those of
``TokenLink.run``.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pkcs11 import MGF, Attribute, DecryptMixin, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from hsm.base import KemAlgorithm, KeyHandle
from hsm.ckr import Fault, fault_of
from hsm.cryptoki import on_fork_in_child
from hsm.errors import KeyNotFound, PermanentBackendError
from hsm.policy import check_label, check_version
from hsm.session_keeper import TokenSession
from hsm.token_objects import (
    APPLICATION,
    PRIVATE_KEY_ATTRIBUTES,
    PUBLIC_KEY_ATTRIBUTES,
    TokenKey,
    build_catalog,
    parse_metadata,
)
from hsm.token_session import TokenLink

KeyId = tuple[str, int]

#: The object classes that make up a key pair on the token.
KEY_CLASSES = (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)

#: OAEP parameters (token hash, token MGF, Python hash) per KEM, best first.
OAEP_PARAMETERS: dict[KemAlgorithm, tuple[Mechanism, MGF, type[hashes.HashAlgorithm]]] = {
    KemAlgorithm.RSA_OAEP_SHA256: (Mechanism.SHA256, MGF.SHA256, hashes.SHA256),
    # SHA-1 only inside OAEP, where collisions do not matter (SET-PROTOCOL.md 8.4).
    KemAlgorithm.RSA_OAEP_SHA1: (Mechanism.SHA_1, MGF.SHA1, hashes.SHA1),
}

#: Bytes encrypted to the token in the OAEP trial: a random AES-256 key's worth.
OAEP_TRIAL_BYTES = 32


class TokenCatalog:
    """The key versions on one token, as last read, and the token's OAEP variant."""

    def __init__(self, link: TokenLink) -> None:
        self._link = link
        self._lock = threading.Lock()
        self._keys: dict[KeyId, TokenKey] = {}
        # None until a trial decryption has been possible (an RSA decryption key exists).
        self._rsa_kem: KemAlgorithm | None = None
        self._rsa_kem_known = False
        on_fork_in_child(self)

    @property
    def rsa_kem(self) -> KemAlgorithm | None:
        """The OAEP variant the token decrypts, once known."""
        return self._rsa_kem

    def refresh(self) -> list[TokenKey]:
        """Re-read the token; every key version, sorted by label then version."""
        keys = self._link.run(self.scan, "list keys")
        with self._lock:
            self._keys = {(key.handle.label, key.handle.version): key for key in keys}
        return keys

    def find(self, label: str, version: int | None) -> TokenKey:
        """The key version (newest if ``version`` is None), re-reading the token on a miss."""
        check_label(label)
        check_version(version)
        found = self._lookup(label, version)
        if found is None:
            self.refresh()  # another process may have added it
            found = self._lookup(label, version)
        if found is None:
            which = "" if version is None else f" v{version}"
            raise KeyNotFound(f"no key {label!r}{which} on {self._link.name}")
        return found

    def forget(self, key: TokenKey) -> None:
        """Drop ``key`` (the token no longer has it): the next lookup reads the token again."""
        with self._lock:
            if self._keys.get((key.handle.label, key.handle.version)) is key:
                del self._keys[(key.handle.label, key.handle.version)]

    def handle_after_change(self, key: KeyId) -> KeyHandle:
        """Re-read the token after a change; the changed key's handle."""
        self.refresh()
        found = self._lookup(*key)
        if found is None:
            label, version = key
            raise PermanentBackendError(
                f"key {label!r} v{version} vanished from {self._link.name} after creation"
            )
        return found.handle

    def scan(self, session: TokenSession) -> list[TokenKey]:
        """Build the key list from the token's objects (settling OAEP on the way)."""
        metadata = [meta for _, meta in metadata_objects(session)]
        # Attributes are read once each search has ended (see TokenSession.search).
        privates = [
            obj.get_attributes(PRIVATE_KEY_ATTRIBUTES)
            for obj in session.search({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        ]
        publics = [
            obj.get_attributes(PUBLIC_KEY_ATTRIBUTES)
            for obj in session.search({Attribute.CLASS: ObjectClass.PUBLIC_KEY})
        ]
        # SoftHSM answers searches with "nothing" when its token directory is gone.
        session.confirm_token()
        keys = build_catalog(metadata, privates, publics, self._rsa_kem)
        if not self._rsa_kem_known:
            for candidate in keys:
                if not (
                    candidate.handle.algorithm.is_rsa and candidate.handle.usage.can_decapsulate
                ):
                    continue
                private = session.find(ObjectClass.PRIVATE_KEY, candidate.ck_id)
                if not isinstance(private, DecryptMixin):
                    # CKA_DECRYPT turned off on the token: this key cannot be asked.
                    continue
                self._rsa_kem = self._probe_oaep(private, candidate)
                self._rsa_kem_known = True
                keys = build_catalog(metadata, privates, publics, self._rsa_kem)
                break
        return keys

    def after_fork_in_child(self) -> None:
        """Replace the lock: a parent thread may have held it at fork time."""
        self._lock = threading.Lock()

    def _lookup(self, label: str, version: int | None) -> TokenKey | None:
        with self._lock:
            if version is not None:
                return self._keys.get((label, version))
            versions = [v for (name, v) in self._keys if name == label]
            return self._keys[(label, max(versions))] if versions else None

    def _probe_oaep(self, private: Any, key: TokenKey) -> KemAlgorithm | None:
        """The best OAEP the token decrypts, found by encrypting to ``key`` and decrypting."""
        if Mechanism.RSA_PKCS_OAEP not in self._link.mechanisms:
            return None
        public = key.handle.public_key
        if not isinstance(public, rsa.RSAPublicKey):
            return None
        for kem, (token_hash, token_mgf, python_hash) in OAEP_PARAMETERS.items():
            probe = secrets.token_bytes(OAEP_TRIAL_BYTES)
            ciphertext = public.encrypt(
                probe, padding.OAEP(padding.MGF1(python_hash()), python_hash(), None)
            )
            try:
                opened = private.decrypt(
                    ciphertext,
                    mechanism=Mechanism.RSA_PKCS_OAEP,
                    mechanism_param=(token_hash, token_mgf, None),
                )
            except p11.PKCS11Error as exc:
                if fault_of(exc) in (Fault.INPUT, Fault.UNSUPPORTED):
                    continue  # this hash is refused: try the next one
                raise
            if hmac.compare_digest(opened, probe):
                return kem
        return None


def objects(session: TokenSession, classes: tuple[ObjectClass, ...], ids: set[bytes]) -> list[Any]:
    """Every object of these classes whose CKA_ID is in ``ids`` (searches run to the end)."""
    return [
        obj
        for object_class in classes
        for ck_id in ids
        for obj in session.search({Attribute.CLASS: object_class, Attribute.ID: ck_id})
    ]


def objects_of(session: TokenSession, label: str, ids: set[bytes], token: str) -> list[Any]:
    """Every object of the key versions of ``label`` with these CKA_IDs, to destroy them.

    Refused when an id reaches further: two private or two public keys under one id
    (another tool made them so), or setpay metadata naming another label. Destroying
    by id would take the other key with it.
    """
    metadata = [(obj, meta) for obj, meta in metadata_objects(session) if meta["id"] in ids]
    victims = []
    for ck_id in ids:
        keys = [objects(session, (object_class,), {ck_id}) for object_class in KEY_CLASSES]
        strangers = [meta for _, meta in metadata if meta["id"] == ck_id and meta["label"] != label]
        if any(len(found) > 1 for found in keys) or strangers:
            raise PermanentBackendError(
                f"CKA_ID {ck_id.hex()} of key {label!r} on {token} is also another key's: "
                "nothing destroyed; give each key its own CKA_ID first"
            )
        victims += [obj for found in keys for obj in found]
        victims += objects(session, (ObjectClass.CERTIFICATE,), {ck_id})
    # Metadata last: a key left without it, should destroying stop half-way, would be
    # taken for another tool's and used with a usage guessed from its attributes.
    return victims + [obj for obj, _ in metadata]


def metadata_objects(session: TokenSession) -> list[tuple[Any, dict[str, Any]]]:
    """setpay's data objects on the token, each with its decoded metadata.

    Only private ones: a session that never logged in can create public objects, and
    the metadata says what a key may do and which version is newest.
    """
    found = []
    for obj in session.search(
        {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: APPLICATION,
            Attribute.PRIVATE: True,
        }
    ):
        meta = parse_metadata(obj[Attribute.VALUE])
        if meta is not None:
            found.append((obj, meta))
    return found
