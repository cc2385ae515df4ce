"""PKCS#11 key backend: private keys stay on a token (SoftHSM 2 is the one tested).

Built on python-pkcs11 0.10.1. How keys look on the token is ``hsm.token_objects``;
which keys are there, ``hsm.token_catalog``; how a key version is made or adopted,
``hsm.token_creation``; login and recovery are ``hsm.token_session``, the sessions
themselves ``hsm.session_keeper``; CKR errors map to the hsm error tree in ``hsm.ckr``;
module initialization per process is ``hsm.cryptoki``.

Operations:

    ECDSA P-256   SHA-256 in Python, raw CKM_ECDSA on the token, r||s re-encoded as DER
                  with the low s (s <= n/2) of the two that verify
    Ed25519       CKM_EDDSA over the whole message
    RSA-PSS       CKM_SHA256_RSA_PKCS_PSS, SHA-256 / MGF1-SHA-256 / salt 32, given
                  explicitly (python-pkcs11's defaults are SHA-1)
    P-256 ECDH    CKM_ECDH1_DERIVE, KDF NULL, into a session secret (not sensitive,
                  extractable); read CKA_VALUE, destroy; the static key never leaves.
                  The point is checked in Python first, so the token refusing it is
                  the token's fault (TransientBackendError), not a bad envelope
    RSA-OAEP      CKM_RSA_PKCS_OAEP decrypt on the token, never OAEP decoding in Python
                  over raw RSA (padding oracle). SHA-256 if the token accepts it, else
                  SHA-1 (SoftHSM 2.6 refuses SHA-256 with CKR_ARGUMENTS_BAD): detected once
                  by a trial decryption, and shown as the ``kem`` of RSA key-exchange handles

Usage is enforced twice: in Python before any token call, and by the key's own
attributes on the token (a key-exchange key has CKA_SIGN false). Keys made by other
tools are used when their usage is unambiguous (see ``hsm.token_catalog``) or once
``adopt`` has recorded their usage and narrowed their attributes, and in either case
only if they are sensitive and not extractable.

Catalog: the backend keeps the list of key versions in memory. A key another process
adds is found on the first ``get`` that misses, and by every ``list_keys``; a key whose
objects an operation finds gone leaves it, so the next ``get`` reads the token again.
Key versions are claimed under an inter-process lock, each with a random CKA_ID of its
own: a label deleted and made again by another process is never found, under the old
key's id, by a backend that still lists the old key. ``object_id`` gives a key's
CKA_ID (for ``pkcs11-tool --id``). Making a key version is all or nothing: if a step
fails, whatever carries its new CKA_ID is destroyed before the error is raised (a token
lost just after making it is the exception: see ``hsm.token_creation``).

Errors raised are those of ``hsm.errors``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import (
    KDF,
    MGF,
    Attribute,
    DecryptMixin,
    DeriveMixin,
    KeyType,
    Mechanism,
    ObjectClass,
    SignMixin,
)
from pkcs11 import exceptions as p11

from hsm.base import (
    KemAlgorithm,
    KeyAlgorithm,
    KeyBackend,
    KeyHandle,
    KeyUsage,
    PrivateKey,
    PublicKey,
)
from hsm.errors import (
    DecapsulationError,
    KeyNotFound,
    KeyUsageError,
    PermanentBackendError,
    TransientBackendError,
    UnsupportedAlgorithm,
)
from hsm.observer import Observer, observed
from hsm.policy import (
    P256_POINT_LENGTH,
    PSS_SALT_LENGTH,
    algorithm_of_private,
    as_bytes,
    check_certificate,
    check_combination,
    check_label,
    check_same_key,
    check_version,
    low_s_signature,
    require_decapsulate,
    require_sign,
)
from hsm.session_keeper import TokenSession
from hsm.session_pool import PoolStats
from hsm.token_catalog import (
    OAEP_PARAMETERS,
    TokenCatalog,
    objects,
    objects_of,
)
from hsm.token_creation import adopt_key, create_key
from hsm.token_objects import (
    PRIVATE_KEY_ATTRIBUTES,
    PUBLIC_KEY_ATTRIBUTES,
    TokenKey,
    certificate_attributes,
    certificates_of,
    describe_key,
    import_attributes,
    keypair_template,
)
from hsm.token_session import Pkcs11Config, TokenLink

__all__ = ["Pkcs11Backend", "Pkcs11Config"]

T = TypeVar("T")

#: Size of a P-256 ECDSA signature as the token returns it: r || s, 32 bytes each.
_ECDSA_RAW_LENGTH = 64

#: The mechanism that generates each key type on a token.
_KEYGEN_MECHANISM = {
    KeyAlgorithm.EC_P256: Mechanism.EC_KEY_PAIR_GEN,
    KeyAlgorithm.ED25519: Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
    KeyAlgorithm.RSA_2048: Mechanism.RSA_PKCS_KEY_PAIR_GEN,
    KeyAlgorithm.RSA_3072: Mechanism.RSA_PKCS_KEY_PAIR_GEN,
}


class Pkcs11Backend(KeyBackend):
    """Keys on a PKCS#11 token; opened (and logged in) on construction."""

    name = "pkcs11"

    def __init__(self, config: Pkcs11Config, observer: Observer | None = None) -> None:
        self._observer = observer
        self._link = TokenLink(config, observer)
        try:
            self._catalog = TokenCatalog(self._link)
            self._catalog.refresh()
        except BaseException:
            # Nobody can close a backend whose constructor failed: without this its
            # logged-in session would stay open (and the process logged in) until exit.
            self._link.close()
            raise

    @property
    def token_name(self) -> str:
        """The token as named in messages ("token 'label'")."""
        return self._link.name

    @property
    def pool_stats(self) -> PoolStats:
        """The session pool's size, leases out and summed waits (read-only, for metrics)."""
        return self._link.pool_stats

    def object_id(self, key: KeyHandle) -> bytes:
        """The CKA_ID of the key's objects on the token (``pkcs11-tool --id`` takes it in hex)."""
        return self._record(key).ck_id

    @property
    def rsa_kem(self) -> KemAlgorithm | None:
        """The OAEP variant this token decrypts (None until an RSA decryption key exists)."""
        return self._catalog.rsa_kem

    def generate(self, label: str, usage: KeyUsage, algorithm: KeyAlgorithm) -> KeyHandle:
        """Generate a key pair on the token under ``label`` (next version)."""
        check_label(label)
        check_combination(usage, algorithm)
        self._require_mechanism(_KEYGEN_MECHANISM[algorithm], f"generate {algorithm.value} keys")

        def create(session: TokenSession, version: int, ck_id: bytes) -> PublicKey:
            template = keypair_template(label, ck_id, usage, algorithm)
            public, private = session.session.generate_keypair(
                template.key_type,
                template.key_length,
                store=True,
                capabilities=0,  # every capability attribute comes from the template
                public_template=template.public,
                private_template=template.private,
            )
            described = describe_key(
                private.get_attributes(PRIVATE_KEY_ATTRIBUTES),
                public.get_attributes(PUBLIC_KEY_ATTRIBUTES),
            )
            if described is None or described[1] is not algorithm:
                raise PermanentBackendError(
                    f"{self._link.name} made a key pair setpay cannot read as {algorithm.value}"
                )
            return described[0]

        return create_key(self._link, self._catalog, label, usage, algorithm, create)

    def import_key(self, label: str, usage: KeyUsage, private_key: PrivateKey) -> KeyHandle:
        """Copy an existing private key onto the token (non-extractable from then on)."""
        check_label(label)
        algorithm = algorithm_of_private(private_key)
        check_combination(usage, algorithm)

        def create(session: TokenSession, version: int, ck_id: bytes) -> PublicKey:
            private, public = import_attributes(label, ck_id, usage, private_key)
            session.session.create_object(private)
            session.session.create_object(public)
            return private_key.public_key()

        return create_key(self._link, self._catalog, label, usage, algorithm, create)

    def adopt(self, ck_id: bytes, label: str, usage: KeyUsage) -> KeyHandle:
        """Take a key made by another tool (found by CKA_ID) under setpay's rules.

        Records ``usage`` in a setpay data object (next version of ``label``) and narrows
        the key's capability attributes to that usage, so the token enforces it too.
        A key without a CKA_ID is refused, nothing changed: setpay finds a key's objects
        by their id, and metadata naming none would name no key.
        """
        check_label(label)
        if not ck_id:
            raise PermanentBackendError(
                "a key without a CKA_ID cannot be adopted: give its objects an id of their "
                "own first (pkcs11-tool --set-id ... does), then adopt it by that id"
            )
        return adopt_key(self._link, self._catalog, ck_id, label, usage)

    def get(self, label: str, version: int | None = None) -> KeyHandle:
        """The key with this label: the given version, or the newest."""
        return self._catalog.find(label, version).handle

    def list_keys(self) -> list[KeyHandle]:
        """Every key version on the token, sorted by label then version."""
        return [key.handle for key in self._catalog.refresh()]

    def delete(self, label: str, version: int | None = None) -> None:
        """Destroy one version's objects (or every version's) on the token."""
        check_label(label)
        check_version(version)

        def destroy(session: TokenSession) -> None:
            doomed = [
                key
                for key in self._catalog.scan(session)
                if key.handle.label == label and version in (None, key.handle.version)
            ]
            if not doomed:
                which = "any version" if version is None else f"v{version}"
                raise KeyNotFound(f"no key {label!r} ({which}) on {self._link.name}")
            victims = objects_of(session, label, {key.ck_id for key in doomed}, self._link.name)
            self._link.invalidate_objects()
            for obj in victims:
                obj.destroy()

        with self._link.admin_lock():
            self._link.run(destroy, "delete a key", retry=False)
        self._catalog.refresh()

    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        """Sign ``data`` on the token (SHA-256; see the module docstring per algorithm)."""
        data = as_bytes(data, "data to sign")
        with observed(self._observer, "sign", key.signature_algorithm.value):
            record = self._record(key)
            require_sign(record.handle)
            algorithm = record.handle.algorithm
            mechanism: Mechanism
            parameter: Any = None
            if algorithm is KeyAlgorithm.EC_P256:
                mechanism, payload = Mechanism.ECDSA, hashlib.sha256(data).digest()
            elif algorithm is KeyAlgorithm.ED25519:
                mechanism, payload = Mechanism.EDDSA, data
            elif Mechanism.SHA256_RSA_PKCS_PSS in self._link.mechanisms:
                mechanism, payload = Mechanism.SHA256_RSA_PKCS_PSS, data
                parameter = (Mechanism.SHA256, MGF.SHA256, PSS_SALT_LENGTH)
            else:
                mechanism, payload = Mechanism.RSA_PKCS_PSS, hashlib.sha256(data).digest()
                parameter = (Mechanism.SHA256, MGF.SHA256, PSS_SALT_LENGTH)
            self._require_mechanism(mechanism, f"sign with {algorithm.value} keys")

            def sign(session: TokenSession) -> bytes:
                private = self._capable(session, record, SignMixin, "sign")
                with session.single_part():
                    signature: bytes = private.sign(
                        payload, mechanism=mechanism, mechanism_param=parameter
                    )
                return signature

            signature = self._run_on_key(record, sign, "sign")
            if algorithm is not KeyAlgorithm.EC_P256:
                return signature
            if len(signature) != _ECDSA_RAW_LENGTH:
                raise PermanentBackendError(
                    f"{self._link.name} returned a {len(signature)}-byte ECDSA signature"
                )
            half = _ECDSA_RAW_LENGTH // 2
            r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            return low_s_signature(r, s)

    def decapsulate(self, key: KeyHandle, kem: KemAlgorithm, ciphertext: bytes) -> bytes:
        """Open a key transport on the token: ECDH shared secret or OAEP plaintext."""
        ciphertext = as_bytes(ciphertext, "ciphertext")
        with observed(self._observer, "decapsulate", kem.value):
            record = self._record(key)
            require_decapsulate(record.handle, kem)
            if kem is KemAlgorithm.P256_HKDF_SHA256:
                return self._ecdh(record, ciphertext)
            return self._oaep_decrypt(record, kem, ciphertext)

    def store_certificate(self, key: KeyHandle, der: bytes) -> None:
        """Store the certificate as an X.509 object beside the key (replacing any)."""
        record = self._record(key)
        certificate = check_certificate(record.handle, der)
        subject = certificate.subject.public_bytes()

        def store(session: TokenSession) -> None:
            # The catalog may still list a key another process has deleted: a certificate
            # stored for it would be an object no key reaches. Under the admin lock, no
            # setpay delete runs between this check and the create.
            session.confirm(ObjectClass.PRIVATE_KEY, record.ck_id)
            for old in objects(session, (ObjectClass.CERTIFICATE,), {record.ck_id}):
                old.destroy()
            session.session.create_object(
                certificate_attributes(record.handle.label, record.ck_id, der, subject)
            )

        with self._link.admin_lock():
            self._run_on_key(record, store, "store a certificate", retry=False)

    def certificate(self, key: KeyHandle) -> bytes | None:
        """The DER certificate stored beside the key, if any.

        Only a certificate of the key's own public key (which its metadata vouches for)
        is the key's; others under its CKA_ID are ignored (``certificates_of``). Two
        different ones are refused: the token cannot say which the CA issued, and
        whoever planted one chooses its dates, so "the newest" would be theirs. One
        alone is returned, whoever issued it: peers check every certificate up to the
        brand root, so one the CA never issued gets no message of this key's accepted.
        """
        record = self._record(key)

        def read(session: TokenSession) -> bytes | None:
            # "No certificate" only for a key that is there: for one deleted elsewhere
            # it is KeyNotFound, as from the software backend.
            session.confirm(ObjectClass.PRIVATE_KEY, record.ck_id)
            found = objects(session, (ObjectClass.CERTIFICATE,), {record.ck_id})
            own = certificates_of(record.handle, [obj[Attribute.VALUE] for obj in found])
            if len(own) > 1:
                ck_id = record.ck_id.hex()
                raise PermanentBackendError(
                    f"{len(own)} different certificates with CKA_ID {ck_id} on "
                    f"{self._link.name} certify {_describe(record)}: setpay cannot tell "
                    "which its CA issued; remove the others (pkcs11-tool --list-objects "
                    f"--type cert --id {ck_id} lists them)"
                )
            if not own:
                session.confirm_token()  # "none" must not mean "token gone"
                return None
            return own[0]

        return self._run_on_key(record, read, "read a certificate")

    def check_health(self) -> None:
        """Raise ``TransientBackendError`` unless the token answers and we are logged in."""
        self._link.check_health()

    def close(self) -> None:
        """Close every session (see ``TokenLink.close``); the backend is unusable afterwards."""
        self._link.close()

    def _ecdh(self, record: TokenKey, ciphertext: bytes) -> bytes:
        # Check the point in Python first: off-curve points are an attack (invalid-curve),
        # and not every token rejects them.
        try:
            if len(ciphertext) != P256_POINT_LENGTH:
                raise ValueError("not an uncompressed P-256 point")
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ciphertext)
        except ValueError:
            raise DecapsulationError("decapsulation failed") from None
        self._require_mechanism(Mechanism.ECDH1_DERIVE, "derive with ec-p256 keys")

        def derive(session: TokenSession) -> bytes:
            private = self._capable(session, record, DeriveMixin, "decapsulate")
            with session.single_part():
                secret = private.derive_key(
                    KeyType.GENERIC_SECRET,
                    256,
                    mechanism=Mechanism.ECDH1_DERIVE,
                    mechanism_param=(KDF.NULL, None, ciphertext),
                    capabilities=0,
                    template={
                        Attribute.TOKEN: False,
                        Attribute.SENSITIVE: False,
                        Attribute.EXTRACTABLE: True,
                    },
                )
            try:
                value: bytes = secret[Attribute.VALUE]
            finally:
                # A session object dies with its session anyway; losing the value we
                # already read over a failed destroy would help nobody.
                with contextlib.suppress(p11.PKCS11Error):
                    secret.destroy()
            return value

        try:
            # Not peer input: the point passed the check above, so a general error is the
            # token's (run once more, as for the bank's own data), and a refusal that
            # stays says nothing about the sender, who must not be told "bad envelope".
            return self._run_on_key(record, derive, "decapsulate")
        except DecapsulationError:
            raise TransientBackendError(
                f"{self._link.name} cannot decapsulate now (it refused a valid P-256 point)"
            ) from None

    def _oaep_decrypt(self, record: TokenKey, kem: KemAlgorithm, ciphertext: bytes) -> bytes:
        token_hash, token_mgf, _ = OAEP_PARAMETERS[kem]

        def decrypt(session: TokenSession) -> bytes:
            private = self._capable(session, record, DecryptMixin, "decapsulate")
            with session.single_part():
                plaintext: bytes = private.decrypt(
                    ciphertext,
                    mechanism=Mechanism.RSA_PKCS_OAEP,
                    mechanism_param=(token_hash, token_mgf, None),
                )
            return plaintext

        return self._run_on_key(record, decrypt, "decapsulate", peer_input=True)

    def _record(self, key: KeyHandle) -> TokenKey:
        """The backend's own record of ``key``: its usage, not the caller's copy, is law."""
        record = self._catalog.find(key.label, key.version)
        check_same_key(record.handle, key)
        return record

    def _run_on_key(
        self,
        record: TokenKey,
        operation: Callable[[TokenSession], T],
        action: str,
        *,
        retry: bool = True,
        peer_input: bool = False,
    ) -> T:
        """``TokenLink.run`` on one key; a key the token no longer has leaves the catalog.

        The catalog may still list a key another process has deleted: forgetting it makes
        the next lookup read the token again, so a key made since under the same label
        is found (and handles of the old one are refused) instead of "not on the token"
        until the next ``list_keys``.
        """
        try:
            return self._link.run(
                operation,
                action,
                retry=retry,
                subject=_describe(record),
                peer_input=peer_input,
            )
        except KeyNotFound:
            self._catalog.forget(record)
            raise

    def _capable(
        self, session: TokenSession, record: TokenKey, capability: type, action: str
    ) -> Any:
        """The key's private object, if its token attributes allow ``action``.

        python-pkcs11 gives an object only the methods its CKA_SIGN / CKA_DERIVE /
        CKA_DECRYPT allow when it is looked up: a key narrowed on the token (by another
        tool, before this lookup) has no method to call, where the token would have said
        CKR_KEY_FUNCTION_NOT_PERMITTED. Same error either way.
        """
        private = session.find(ObjectClass.PRIVATE_KEY, record.ck_id)
        if not isinstance(private, capability):
            raise KeyUsageError(
                f"{self._link.name} refused to {action}: the key's attributes forbid it"
            )
        return private

    def _require_mechanism(self, mechanism: Mechanism, purpose: str) -> None:
        if mechanism not in self._link.mechanisms:
            raise UnsupportedAlgorithm(
                f"{self._link.name} cannot {purpose}: no {mechanism.name} mechanism"
            )


def _describe(key: TokenKey) -> str:
    return f"key {key.handle.label!r} v{key.handle.version}"
