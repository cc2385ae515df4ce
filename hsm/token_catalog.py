"""Which key versions are on a token: read from its objects, kept in memory, refreshed.

The catalog is rebuilt from the token (setpay data objects, private and public keys;
see ``hsm.token_objects`` for their shape) on open, on every ``list_keys``, after every
change, and when a lookup misses (another process may have added the key). While
rebuilding it also settles, once per token, which OAEP variant the token decrypts: it
encrypts a random value in software to the first RSA decryption key it finds and asks
the token to decrypt it with SHA-256 parameters, then SHA-1 (SoftHSM 2.6 refuses SHA-256
with CKR_ARGUMENTS_BAD). Never OAEP decoding in Python over raw RSA.

Private keys without a setpay data object (made by ``pkcs11-tool`` or another tool) are
adopted when the capabilities their key type can use make the usage unambiguous: for
P-256, CKA_SIGN without CKA_DERIVE means ``signature`` and the reverse ``key-exchange``;
for RSA the same with CKA_DECRYPT; Ed25519 only signs. (SoftHSM turns CKA_DECRYPT and
CKA_UNWRAP on by default, and pkcs11-tool cannot turn them off, so on an EC key they are
ignored: no EC mechanism decrypts.) Anything else, an algorithm off the allow-list, a
label already used by setpay keys, or a label another such key carries too, is left
alone until adopted explicitly (``Pkcs11Backend.adopt``).

Inferred keys are version 1 under their CKA_LABEL (or ``id-HEX`` when it is unusable).

A CKA_ID held by two private keys or two public keys (another tool may make them so)
ties no key made by another tool to its objects: neither is used, each needs an id of
its own first. A setpay key's public key object is the one its metadata vouches for
(``public``): the metadata is private, so only a logged-in user writes it, while anyone
reaching the token without its PIN can create public objects under any CKA_ID (setpay's
public keys and certificates show the ids), so other public key objects under its id
are ignored. Metadata written before setpay recorded ``public`` (or while its key was
being made) vouches for none: such a key is not used while another public key object
carries its id.

Private key objects that are public objects (CKA_PRIVATE false) are never read: anyone
without the PIN can create one, under a setpay key's id or a label of their choosing,
from a value they know (``hsm.token_objects.search_template``). A setpay key whose
id another private one carries (made by a logged-in user) is not used: the id cannot say
which is setpay's, and operations find the key by its id.

A version claimed by two setpay keys is used by neither, nor destroyed by a delete
(``hsm.token_claims``): ``get`` of it refuses, by its number or as the label's newest,
and a refused version is read again only now and then.

Errors raised: ``KeyNotFound``, ``PermanentBackendError``, and those of
``TokenLink.run``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pkcs11 import MGF, Attribute, DecryptMixin, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyHandle, KeyUsage, PublicKey
from hsm.ckr import Fault, fault_of
from hsm.cryptoki import on_fork_in_child
from hsm.errors import KeyNotFound, PermanentBackendError
from hsm.policy import LABEL_PATTERN, check_label, check_version
from hsm.session_keeper import TokenSession
from hsm.token_claims import Claims, KeyId, claimed_twice, claimed_twice_message
from hsm.token_objects import (
    APPLICATION,
    PRIVATE_KEY_ATTRIBUTES,
    PUBLIC_KEY_ATTRIBUTES,
    TokenKey,
    describe_key,
    holds_public_key,
    kem_for,
    made_logged_in,
    parse_metadata,
    public_fingerprint,
    search_template,
    stays_on_token,
)
from hsm.token_session import TokenLink

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

_log = logging.getLogger(__name__)


class TokenCatalog:
    """The key versions on one token, as last read, and the token's OAEP variant."""

    def __init__(self, link: TokenLink) -> None:
        self._link = link
        self._lock = threading.Lock()
        self._keys: dict[KeyId, TokenKey] = {}
        self._claims = Claims()  # versions two keys claim (see the module)
        # None until a trial decryption has been possible (an RSA decryption key exists).
        self._rsa_kem: KemAlgorithm | None = None
        self._rsa_kem_known = False
        on_fork_in_child(self)

    @property
    def rsa_kem(self) -> KemAlgorithm | None:
        """The OAEP variant the token decrypts, once known."""
        return self._rsa_kem

    def refresh(self) -> list[TokenKey]:
        """Re-read the token; every usable key version, sorted by label then version
        (a version two keys claim is left out, see the module)."""
        keys = self._link.run(self.scan, "list keys")
        twice = {
            key_id: claimed_twice_message(key_id, ck_ids, self._link.name)
            for key_id, ck_ids in claimed_twice(keys).items()
        }
        usable = [key for key in keys if (key.handle.label, key.handle.version) not in twice]
        with self._lock:
            self._keys = {(key.handle.label, key.handle.version): key for key in usable}
            first_seen = self._claims.replace(twice)
        for message in first_seen:
            _log.warning("%s", message)
        return usable

    def find(self, label: str, version: int | None) -> TokenKey:
        """The key version (the newest if ``version`` is None), re-reading the token on a
        miss, and now and then for a version two keys claim."""
        check_label(label)
        check_version(version)
        found = self._lookup(label, version)
        if found is None or (isinstance(found, str) and self._may_read_again()):
            # Another process may have added it, or removed one of two keys claiming it.
            self.refresh()
            found = self._lookup(label, version)
        if isinstance(found, str):
            raise PermanentBackendError(found)
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
        if isinstance(found, str):
            raise PermanentBackendError(found)
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
            for obj in session.search(search_template(ObjectClass.PRIVATE_KEY))
        ]
        publics = [
            obj.get_attributes(PUBLIC_KEY_ATTRIBUTES)
            for obj in session.search(search_template(ObjectClass.PUBLIC_KEY))
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

    def _may_read_again(self) -> bool:
        with self._lock:
            return self._claims.may_read_again()

    def claim_refused(self, key: KeyId) -> str | None:
        """Why the catalog, as last read, refuses ``key`` as claimed twice (None: it does not)."""
        with self._lock:
            return self._claims.refused.get(key)

    def _lookup(self, label: str, version: int | None) -> TokenKey | str | None:
        """The key version as last read (the newest if None), or why it is refused."""
        with self._lock:
            refused = self._claims.refused
            if version is None:
                versions = [v for (name, v) in [*self._keys, *refused] if name == label]
                if not versions:
                    return None
                # A newest version two keys claim names neither, and no other either: the
                # caller means the newest, which the token cannot say (``hsm.token_claims``).
                version = max(versions)
            return refused.get((label, version)) or self._keys.get((label, version))

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


def build_catalog(
    metadata: Iterable[dict[str, Any]],
    private_keys: Iterable[dict[Attribute, Any]],
    public_keys: Iterable[dict[Attribute, Any]],
    rsa_kem: KemAlgorithm | None,
) -> list[TokenKey]:
    """Key versions from the attributes of the token's data, private and public objects."""
    by_id: dict[bytes, dict[str, Any]] = {}
    for found in metadata:
        # A creation stopped between writing its final metadata and destroying the first
        # leaves both: the one that vouches for a public key is the key's.
        if by_id.get(found["id"], {}).get("public") is None:
            by_id[found["id"]] = found
    # Read as TokenSession.find reads: only private objects can be a key's (see module).
    private_keys = [attrs for attrs in private_keys if made_logged_in(attrs)]
    public_keys = list(public_keys)
    shared = shared_ids(private_keys, public_keys)
    privates_per_id = Counter(attrs.get(Attribute.ID, b"") for attrs in private_keys)
    publics: dict[bytes, list[dict[Attribute, Any]]] = {}
    for attrs in public_keys:
        publics.setdefault(attrs.get(Attribute.ID, b""), []).append(attrs)
    own: list[TokenKey] = []
    foreign: list[TokenKey] = []
    refused: set[bytes] = set()
    for attrs in private_keys:
        if not stays_on_token(attrs):
            continue
        ck_id = attrs.get(Attribute.ID, b"")
        meta = by_id.get(ck_id) if ck_id else None
        if meta is not None:
            if ck_id in refused:
                continue  # said once per id, not once per private key object under it
            described = _described_own(attrs, meta, publics.get(ck_id, []), privates_per_id)
            if described is None:
                refused.add(ck_id)
        elif ck_id in shared:
            # Which public key is this key's, and what would deleting it destroy? The id
            # cannot say, so neither key is used until each has an id of its own.
            _log.warning(
                "keys sharing CKA_ID %s are not used: give each its own CKA_ID, then adopt",
                ck_id.hex() or "(empty)",
            )
            continue
        else:
            described = describe_key(attrs, next(iter(publics.get(ck_id, [])), None))
        if described is None:
            continue
        public_key, algorithm = described
        if meta is not None:
            if meta["algorithm"] is not algorithm:
                continue
            label, version, usage = meta["label"], meta["version"], meta["usage"]
        else:
            adopted_usage = _usage_from_attributes(attrs, algorithm)
            if adopted_usage is None:
                continue
            label, version, usage = _adopted_label(attrs, ck_id), 1, adopted_usage
        kem = kem_for(usage, algorithm, rsa_kem)
        handle = KeyHandle(label, version, usage, algorithm, public_key, kem)
        (own if meta is not None else foreign).append(TokenKey(handle, ck_id, meta is None))
    own_labels = {key.handle.label for key in own}
    held = Counter(key.handle.label for key in foreign)
    for key in foreign:
        # One adopted key per label, and never beside setpay's own versions of that label:
        # versions must mean the same thing everywhere. A label two foreign keys carry
        # names neither: the token's listing order is no choice (``adopt`` makes one).
        if key.handle.label in own_labels:
            continue
        if held[key.handle.label] > 1:
            _log.warning(
                "%d keys made by another tool carry label %r: none is used until one is "
                "adopted by its CKA_ID",
                held[key.handle.label],
                key.handle.label,
            )
            held[key.handle.label] = 0  # one warning per label
            continue
        if held[key.handle.label] == 1:
            own.append(key)
    own.sort(key=lambda key: (key.handle.label, key.handle.version))
    return own


def _described_own(
    private: dict[Attribute, Any],
    meta: dict[str, Any],
    publics: list[dict[Attribute, Any]],
    privates_per_id: Counter[bytes],
) -> tuple[PublicKey, KeyAlgorithm] | None:
    """Public key and algorithm of a key setpay's metadata describes; None (said) if unusable."""
    which = f"key {meta['label']!r} v{meta['version']}"
    ck_id = meta["id"]
    if privates_per_id[ck_id] > 1:
        # Made by someone with the PIN (another tool, by mistake): an operation finds
        # the key by its id, and two would make every one fail.
        _log.warning(
            "%s is not used: another private key object carries its CKA_ID %s; remove "
            "the one setpay did not make (pkcs11-tool --list-objects --id %s lists both)",
            which, ck_id.hex(), ck_id.hex(),
        )  # fmt: skip
        return None
    if meta.get("public") is None:
        if len(publics) > 1:
            _log.warning(
                "%s is not used: another public key object carries its CKA_ID %s, and its "
                "metadata, older than the record of its public key, cannot say which is its"
                " own; remove the other (pkcs11-tool --list-objects --id %s lists both)",
                which, ck_id.hex(), ck_id.hex(),
            )  # fmt: skip
            return None
        return describe_key(private, publics[0] if publics else None)
    # Copies of one public key all hold it: any of them is the key's.
    held = [public for public in publics if holds_public_key(public, meta["public"])]
    described = describe_key(private, held[0] if held else None)
    if described is None or public_fingerprint(described[0]) != meta["public"]:
        # RSA keys carry their public half in the private object: checked too.
        _log.warning(
            "%s is not used: no key object with its CKA_ID %s holds the public key its "
            "metadata records",
            which, ck_id.hex(),
        )  # fmt: skip
        return None
    return described


def shared_ids(
    private_keys: Iterable[dict[Attribute, Any]], public_keys: Iterable[dict[Attribute, Any]]
) -> set[bytes]:
    """CKA_IDs held by more than one private key or more than one public key."""
    privates = Counter(attrs.get(Attribute.ID, b"") for attrs in private_keys)
    publics = Counter(attrs.get(Attribute.ID, b"") for attrs in public_keys)
    return {ck_id for ck_id, count in (privates | publics).items() if count > 1}


def _usage_from_attributes(attrs: dict[Attribute, Any], algorithm: KeyAlgorithm) -> KeyUsage | None:
    signs = bool(attrs.get(Attribute.SIGN))
    if algorithm is KeyAlgorithm.EC_P256:
        opens = bool(attrs.get(Attribute.DERIVE))
    elif algorithm.is_rsa:
        opens = bool(attrs.get(Attribute.DECRYPT))
    else:
        opens = False
    if signs and not opens:
        return KeyUsage.SIGNATURE
    if opens and not signs:
        return KeyUsage.KEY_EXCHANGE
    return None


def _adopted_label(attrs: dict[Attribute, Any], ck_id: bytes) -> str:
    label = attrs.get(Attribute.LABEL) or ""
    if isinstance(label, str) and LABEL_PATTERN.fullmatch(label):
        return label
    return f"id-{ck_id.hex()}"[:64]


def objects(session: TokenSession, classes: tuple[ObjectClass, ...], ids: set[bytes]) -> list[Any]:
    """Every object of these classes whose CKA_ID is in ``ids`` (searches run to the end).

    Private keys only among private objects, as everywhere (see the module).
    """
    return [
        obj
        for object_class in classes
        for ck_id in ids
        for obj in session.search(search_template(object_class, ck_id))
    ]


def objects_of(session: TokenSession, label: str, ids: set[bytes], token: str) -> list[Any]:
    """Every object of the key versions of ``label`` with these CKA_IDs, to destroy them.

    Public key objects under an id whose metadata vouches for a public key go only if
    they hold that key: the others are not the key's (see the module). Refused when an
    id reaches further: two private keys, or two public keys under metadata that vouches
    for none, or setpay metadata naming another label. Destroying by id would take the
    other key with it. The catalog lists no such key, so only an object made between
    its reading and this search meets the refusal; it stays, as that race is real. Also
    refused when two of the ids claim one version (see the module).
    """
    metadata = [(obj, meta) for obj, meta in metadata_objects(session) if meta["id"] in ids]
    claims: dict[KeyId, set[bytes]] = {}
    for _, meta in metadata:
        if meta["label"] == label:
            claims.setdefault((label, meta["version"]), set()).add(meta["id"])
    for key_id, claimed in sorted(claims.items()):
        if len(claimed) > 1:
            # "Version n" would be two keys: which one the caller means cannot be told.
            raise PermanentBackendError(claimed_twice_message(key_id, sorted(claimed), token))
    victims = []
    for ck_id in ids:
        privates = objects(session, (ObjectClass.PRIVATE_KEY,), {ck_id})
        publics = objects(session, (ObjectClass.PUBLIC_KEY,), {ck_id})
        mine = [meta for _, meta in metadata if meta["id"] == ck_id and meta["label"] == label]
        vouched = next((meta for meta in mine if meta["public"] is not None), None)
        if vouched is not None:
            publics = [
                obj
                for obj in publics
                if holds_public_key(obj.get_attributes(PUBLIC_KEY_ATTRIBUTES), vouched["public"])
            ]
        strangers = [meta for _, meta in metadata if meta["id"] == ck_id and meta["label"] != label]
        if len(privates) > 1 or (vouched is None and len(publics) > 1) or strangers:
            raise PermanentBackendError(
                f"CKA_ID {ck_id.hex()} of key {label!r} on {token} is also another key's: "
                "nothing destroyed; give each key its own CKA_ID first"
            )
        victims += privates + publics
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
