"""Key versions coming onto a token: made by setpay, all or nothing, or adopted.

Both claim the next version of a label under the inter-process admin lock
(``TokenLink.admin_lock``), then re-read the catalog. The next version is above every
version setpay's metadata names for the label, not only those the catalog uses: a key
refused for now (its public key object removed, which a session without the PIN can do)
is used again once the cause goes, and its version handed out meanwhile would then be
claimed by two keys (``hsm.token_claims``), the newer refused everywhere. Metadata whose
key never came (a creation stopped half-way) costs a version number, nothing else.

A version setpay makes gets a random CKA_ID of its own, and its setpay data object (the
metadata) is written first: a data object whose key never came is ignored by every
reader, where a key without its metadata would be adopted with a usage guessed from its
attributes. Once the key is made, metadata that also records its public key (which
public key object is the key's, ``hsm.token_catalog``) replaces the first. If any step
fails, every object made under the new CKA_ID is destroyed before the error is raised,
under the same locks, including objects the token kept from a call it refused (SoftHSM 2.6
keeps the public key whose template lacks a required attribute, with its label and id).
Once made, the key is read back from the token; should the token stop answering right
then, the version is past taking back, and the error's message names it (as it names
objects a failed creation could not destroy).

A key made by another tool is adopted only if it is a private object, sensitive and not
extractable, and only if no other private or public key object carries its CKA_ID: its
usage and public key are recorded in a data object and its capability attributes are
narrowed to that usage, so the token enforces it too.

Errors raised are those of ``hsm.errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage, PublicKey
from hsm.errors import KeyBackendError, KeyExists, PermanentBackendError, UnsupportedAlgorithm
from hsm.policy import algorithm_to_hold, check_combination
from hsm.session_keeper import TokenSession
from hsm.token_catalog import KEY_CLASSES, TokenCatalog, metadata_objects, objects
from hsm.token_claims import KeyId
from hsm.token_objects import (
    PRIVATE_KEY_ATTRIBUTES,
    PUBLIC_KEY_ATTRIBUTES,
    TokenKey,
    capability_attributes,
    describe_key,
    metadata_attributes,
    new_key_id,
    public_object_template,
    stays_on_token,
)
from hsm.token_session import TokenLink

#: Makes a claimed key version's objects on the session, (session, version, CKA_ID), and
#: returns the public key it made (the metadata vouches for it).
KeyMaker = Callable[[TokenSession, int, bytes], PublicKey]


def create_key(
    link: TokenLink,
    catalog: TokenCatalog,
    label: str,
    usage: KeyUsage,
    algorithm: KeyAlgorithm,
    make: KeyMaker,
) -> KeyHandle:
    """Claim the next version of ``label`` and make it with ``make``: all or nothing."""
    left: list[str] = []  # what a failed creation could not take back, for its message
    ck_id = new_key_id()

    def add(session: TokenSession) -> KeyId:
        version = _next_version(session, label, catalog.scan(session))
        # First metadata that vouches for no public key (none exists yet), then, once the
        # key is made, metadata that does: tokens refuse to change a data object's value,
        # so the first is replaced. Stopped in between, the key is used under the rule
        # for metadata written before ``public`` (hsm.token_catalog).
        first = metadata_attributes(label, version, usage, algorithm, ck_id, None)
        written = [first]
        try:
            pending = session.session.create_object(first)
            public_key = make(session, version, ck_id)
            written.append(metadata_attributes(label, version, usage, algorithm, ck_id, public_key))
            session.session.create_object(written[-1])
            pending.destroy()
        except BaseException:
            left.extend(_unmake(link, session, ck_id, written))
            raise
        return (label, version)

    with link.admin_lock():
        try:
            label_version = link.run(add, f"create a {algorithm.value} key", retry=False)
        except KeyBackendError as exc:
            if not left:
                raise
            raise _with_message(exc, f"{exc}; {left[0]}") from exc
    try:
        return catalog.handle_after_change(label_version)
    except KeyBackendError as exc:
        _refuse_if_claimed_twice(exc, catalog, label_version, f"was made on {link.name}", ck_id)
        # Made, then the token stopped answering: past taking back. The caller has no
        # handle of this version, so the error names it, in its message: the CLI prints
        # and logs show only that.
        raise _with_message(
            exc,
            f"{exc}; key {label!r} v{label_version[1]} was made on {link.name} and may be "
            "there once it answers: delete it if it is not wanted",
        ) from exc


def adopt_key(
    link: TokenLink, catalog: TokenCatalog, ck_id: bytes, label: str, usage: KeyUsage
) -> KeyHandle:
    """Take the key with this CKA_ID as the next version of ``label``, for ``usage``."""

    def adopt(session: TokenSession) -> KeyId:
        listed = catalog.scan(session)
        managed = [key for key in listed if key.ck_id == ck_id]
        if managed and not managed[0].adopted:
            found = managed[0].handle
            raise KeyExists(f"CKA_ID {ck_id.hex()} is already key {found.label!r} v{found.version}")
        # Before anything changes: for a shared id, the catalog could not list the key
        # this would make, and the token would keep narrowed attributes and metadata.
        privates = objects(session, (ObjectClass.PRIVATE_KEY,), {ck_id})
        publics = objects(session, (ObjectClass.PUBLIC_KEY,), {ck_id})
        if not privates and session.search(public_object_template(ck_id)):
            # Every search for keys skips such objects: "not on the token" would puzzle
            # an operator whose tool made the key so.
            raise PermanentBackendError(
                f"key with CKA_ID {ck_id.hex()} is a public object (CKA_PRIVATE false): "
                "anyone can make such objects without the PIN; make or import the key "
                "again as a private object"
            )
        if len(privates) > 1 or len(publics) > 1:
            raise PermanentBackendError(
                f"CKA_ID {ck_id.hex()} is carried by {len(privates)} private and "
                f"{len(publics)} public key objects: nothing adopted; give each key its "
                "own CKA_ID first"
            )
        private = session.find(ObjectClass.PRIVATE_KEY, ck_id)
        attributes = private.get_attributes(PRIVATE_KEY_ATTRIBUTES)
        if not stays_on_token(attributes):
            raise PermanentBackendError(
                f"key with CKA_ID {ck_id.hex()} can leave the token (CKA_EXTRACTABLE "
                "true or CKA_SENSITIVE false): setpay uses only keys that never do; "
                "generate or import the key again as sensitive and not extractable"
            )
        described = describe_key(
            attributes,
            publics[0].get_attributes(PUBLIC_KEY_ATTRIBUTES) if publics else None,
        )
        if described is None:
            raise UnsupportedAlgorithm(
                f"key with CKA_ID {ck_id.hex()} is not P-256, Ed25519, RSA-2048 or RSA-3072"
            )
        public_key, algorithm = described
        algorithm_to_hold(public_key)  # the exponent, which the catalog's reading passes
        check_combination(usage, algorithm)
        for attribute, value in capability_attributes(usage, algorithm).items():
            private[attribute] = value
        # The key itself may already be listed (inferred) under this label: not a version.
        version = _next_version(session, label, [k for k in listed if k.ck_id != ck_id])
        session.session.create_object(
            metadata_attributes(label, version, usage, algorithm, ck_id, public_key)
        )
        link.invalidate_objects()
        return (label, version)

    with link.admin_lock():
        label_version = link.run(
            adopt, "adopt a key", retry=False, subject=f"key with CKA_ID {ck_id.hex()}"
        )
    try:
        return catalog.handle_after_change(label_version)
    except KeyBackendError as exc:
        _refuse_if_claimed_twice(exc, catalog, label_version, f"was adopted on {link.name}", ck_id)
        raise


def _next_version(session: TokenSession, label: str, listed: list[TokenKey]) -> int:
    """The version after every one of ``label`` that ``listed`` holds or that setpay's
    metadata on the token names, its key used or not (see the module)."""
    versions = [key.handle.version for key in listed if key.handle.label == label]
    versions += [meta["version"] for _, meta in metadata_objects(session) if meta["label"] == label]
    return 1 + max(versions, default=0)


def _refuse_if_claimed_twice(
    exc: KeyBackendError, catalog: TokenCatalog, key: KeyId, done: str, ck_id: bytes
) -> None:
    """Raise, when the version just claimed turns out claimed by another key too (made
    by a process holding another key lock), an error that says so: the key is there
    and nothing deletes it (``hsm.token_claims``); the operator removes one by CKA_ID."""
    refused = catalog.claim_refused(key)
    if refused is None:
        return
    label, version = key
    raise PermanentBackendError(
        f"key {label!r} v{version} {done} (CKA_ID starting {ck_id.hex()[:8]}), but another"
        f" key claims v{version} too: {refused}"
    ) from exc


def _with_message(exc: KeyBackendError, message: str) -> KeyBackendError:
    """``exc``'s kind (callers tell transient from permanent by it) with a longer message."""
    return type(exc)(message)


def _unmake(
    link: TokenLink,
    session: TokenSession,
    ck_id: bytes,
    metadata: list[dict[Attribute, Any]],
) -> list[str]:
    """Destroy what a failed key creation made: its key objects, then its metadata.

    The CKA_ID is new and random, so whatever carries it is this creation's. Should
    the token refuse this too (it went away), the answer says what is left.
    """
    try:
        victims = objects(session, KEY_CLASSES, {ck_id})
        # Data objects have no CKA_ID: found by their whole value, which holds it.
        kept = (Attribute.CLASS, Attribute.APPLICATION, Attribute.VALUE)
        for written in metadata:
            victims += session.search({attribute: written[attribute] for attribute in kept})
        for obj in victims:
            obj.destroy()
    except p11.PKCS11Error:
        return [
            f"objects with CKA_ID {ck_id.hex()} may be left on {link.name} "
            "(pkcs11-tool --list-objects shows them; the data object has the id in "
            "its value)"
        ]
    return []
