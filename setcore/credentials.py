"""A party's own signing and opening material: key handles and their certificates.

A key-exchange key is paired here with the certificate the party presents for it, and
refused (``ConfigurationError``) unless the key transport the key accepts (``KeyHandle.kem``,
which the envelope opener holds every envelope to) is the one the certificate names
(kemAlgorithm): peers seal by the certificate, so a key whose metadata (or token) says
another would accept what the brand never certified (``check_key_exchange_pair``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from hsm.base import KeyBackend, KeyHandle
from setcore.encoding import thumbprint
from setcore.errors import ConfigurationError, ProtocolError
from setcore.frozen_copy import with_field
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import read_kem
from setpay.v1 import crypto_pb2

#: Picks the key-exchange key that opens an envelope sealed to a certificate thumbprint:
#: (the key, the thumbprint of its certificate). A thumbprint it holds no key for gets
#: some key all the same, whose certificate the opener then finds is not the one named
#: (WRONG_RECIPIENT); anything else it raises reaches the opener's caller.
KeyExchangeChooser = Callable[[bytes], tuple[KeyHandle, bytes]]


@dataclass(frozen=True)
class Credentials:
    """Key handles (never key bytes) with the certificates that name them.

    ``chain`` holds the issuing CA certificates up to, not including, the brand root.
    The bundle that travels with every signed message is built once here.

    ``key_exchange_chooser``, if any, picks the key each envelope is opened with by the
    certificate it is sealed to (a gateway, or a merchant, that kept its older
    key-exchange keys after a renewal); without one, every envelope is opened with
    ``key_exchange_key``. ``earlier_signature_thumbs`` are the thumbprints of this party's
    signature certificates before its renewals, which the answers to requests it signed
    with them still name (``signs_as``).
    """

    backend: KeyBackend
    signature_key: KeyHandle
    signature_cert: bytes
    chain: tuple[bytes, ...] = ()
    key_exchange_key: KeyHandle | None = None
    key_exchange_cert: bytes | None = None
    key_exchange_chooser: KeyExchangeChooser | None = field(
        default=None, kw_only=True, compare=False, repr=False
    )
    earlier_signature_thumbs: frozenset[bytes] = field(
        default=frozenset(), kw_only=True, compare=False, repr=False
    )
    signature_thumb: bytes = field(init=False)
    key_exchange_thumb: bytes | None = field(init=False)
    _bundle: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Once per party (and per older key a gateway keeps), at start: never per request
        # (``choosing_key_exchange`` copies, and does not run this again).
        if self.key_exchange_key is not None and self.key_exchange_cert is not None:
            check_key_exchange_pair(self.key_exchange_key, self.key_exchange_cert)
        object.__setattr__(self, "signature_thumb", thumbprint(self.signature_cert))
        kex_thumb = thumbprint(self.key_exchange_cert) if self.key_exchange_cert else None
        object.__setattr__(self, "key_exchange_thumb", kex_thumb)
        certs = [self.signature_cert]
        if self.key_exchange_cert:
            certs.append(self.key_exchange_cert)
        certs.extend(self.chain)
        bundle = crypto_pb2.CertBundle(certificates=certs)
        object.__setattr__(self, "_bundle", bundle.SerializeToString())

    def bundle(self) -> crypto_pb2.CertBundle:
        """A fresh CertBundle with this party's certificates and chain."""
        return crypto_pb2.CertBundle.FromString(self._bundle)

    def require_key_exchange(self) -> tuple[KeyHandle, bytes]:
        """The key-exchange key and its certificate thumbprint; parties without one cannot open."""
        if self.key_exchange_key is None or self.key_exchange_thumb is None:
            raise ValueError("these credentials have no key-exchange key")
        return self.key_exchange_key, self.key_exchange_thumb

    def key_exchange_for(self, thumb: bytes) -> tuple[KeyHandle, bytes]:
        """The key-exchange key that opens an envelope sealed to the certificate ``thumb``
        names, and its certificate's thumbprint (``key_exchange_chooser``'s, else ours)."""
        if self.key_exchange_chooser is not None:
            return self.key_exchange_chooser(thumb)
        return self.require_key_exchange()

    def signs_as(self, thumb: bytes) -> bool:
        """True when ``thumb`` names this party's signature certificate: the current one or
        one of ``earlier_signature_thumbs``."""
        return any(
            hmac.compare_digest(thumb, own)
            for own in (self.signature_thumb, *self.earlier_signature_thumbs)
        )

    def choosing_key_exchange(self, chooser: KeyExchangeChooser) -> Credentials:
        """These credentials opening with the key ``chooser`` picks for each envelope."""
        # A shallow copy (``setcore.frozen_copy``): the thumbprints and the bundle stay as
        # computed, where ``dataclasses.replace`` would hash and serialize them again; a
        # gateway does this for every request (``gateway.bank.Bank.opening_credentials``).
        return with_field(self, "key_exchange_chooser", chooser)


#: What a refusal of the version in use advises: nothing that loads the keys (a renewal,
#: the CA's commands) gets past the same check, and a keystore refuses a copy from before
#: its upgrade (no MAC), so only the version's files as they were since then, or the token
#: (or module) that made the key, give back the KEM it was certified with.
RESTORE_REMEDY = (
    "restore this version's files from a backup taken after the keystore's upgrade to "
    "this release (setpay keys upgrade-keystore; a backup from before it is refused), or, "
    "on a token whose OAEP support changed, go back to the token or module that certified "
    "the key"
)


def older_version_remedy(command: str, note: str = "") -> str:
    """The advice for an older version of a key-exchange key that ``check_key_exchange_pair``
    refuses: delete it with ``command`` (a ``setpay keys delete`` naming it; ``note`` says
    what a placeholder in it stands for), or restore it as the version in use would be
    (``RESTORE_REMEDY``)."""
    said = f" ({note})" if note else ""
    return (
        "this is an older version, which opens only what was sealed to it before a "
        f"renewal: delete it with `{command}`{said} and start again, or {RESTORE_REMEDY}"
    )


def check_key_exchange_pair(key: KeyHandle, der: bytes, remedy: str = RESTORE_REMEDY) -> None:
    """Refuse (``ConfigurationError``, naming the key's label and version, and ``remedy``:
    what to do) to pair ``key`` with the certificate ``der`` unless the key accepts the key
    transport it names.

    The opener holds each envelope to the key's own KEM; peers seal by the certificate's
    kemAlgorithm: a key that says another (its metadata edited, a token's OAEP changed
    since it was certified) would open what the brand never certified, and refuse what
    honest peers seal. ``RESTORE_REMEDY`` suits the version in use; an older version's
    caller names the command that deletes it (``older_version_remedy``).
    """
    name = f"key {key.label!r} v{key.version}"
    try:
        certified = read_kem(load_certificate(der))
    except ProtocolError as exc:  # malformed, whatever cryptography's exception for it
        raise ConfigurationError(
            f"{name}: the key-exchange certificate presented with it is not X.509 setpay "
            "can read (its kemAlgorithm cannot be told)"
        ) from exc
    if certified is key.kem:
        return
    accepts = key.kem.value if key.kem is not None else "no key transport"
    names = f"kemAlgorithm {certified.value}" if certified is not None else "no kemAlgorithm"
    raise ConfigurationError(
        f"{name} accepts {accepts}, but the key-exchange certificate presented with it "
        f"names {names}: the key's metadata (or its token) changed since it was certified. "
        f"Refused: {remedy}"
    )
