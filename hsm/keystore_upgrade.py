"""Upgrading an older software keystore to authenticated key metadata (format 3).

A keystore from before (header format 1 or 2, each N.json in format 1, without MAC) is
refused at open (``legacy_refusal``), before any lock is taken or anything written. It
is not upgraded by an open, because nothing stored in the directory can tell a first
upgrade from a replayed one: whoever can write the directory can put back a keystore.json
from before the upgrade (any backup holds one) beside N.json files edited to say what
they like, and an automatic upgrade would then MAC what they said. So the operator
upgrades it, once, with ``setpay keys upgrade-keystore`` (``Keystore.upgrade``): first
a dry run, which writes nothing and shows every key version it would authenticate,
warning when some already carry a MAC (the header is older than its entries); then the
same with ``--yes``, which writes. Each N.json is rewritten with its MAC, then the
header in format 3, last: a cut upgrade leaves an old keystore, which the same command
finishes. The upgrade also clears the temp files killed writes left.

The warning is no defence on its own: whoever strips every MAC leaves nothing to warn
of. So where a version has its certificate (N.cert.der, signed by a CA whose key the
editor lacks), the metadata is checked against it: the certificate must be of N.pub.pem's
key, and its keyUsage that of the usage the metadata claims (``certified_usage``). What
only a reader of SET's extensions can check (the key transport a key-exchange
certificate names), the caller's ``check`` does, on each certificate that is of its
version's key; every disagreement found, of either, is named in one refusal
(``refuse_disagreements``), nothing written. Versions without a certificate are named,
for the operator to check by eye.

This check is a first look, not the defence: it reads the certificate without verifying
its signature (``hsm`` holds no trust anchor), so an editor who also replaces N.cert.der
(with one of the same key that they made) or deletes it passes it. What stops such a
key is the check at run time, on every keystore, upgraded or not: wherever a party pairs
its key-exchange key with the certificate it presents, that certificate's kemAlgorithm
must be the key transport the key accepts, or the party does not start
(``setcore.credentials.check_key_exchange_pair``). The bank presents its CA-issued
certs/LABEL.der, whatever lies beside the key; a client presents the certificate beside
its key, and one its editor made does not chain to the brand, so no peer seals to it.

Errors raised (``hsm.errors``): ``PermanentBackendError``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from hsm.base import KeyHandle, KeyUsage
from hsm.errors import PermanentBackendError
from hsm.policy import LABEL_PATTERN, public_key_der

#: The temp files ``hsm.keystore`` writes before each rename (``.NAME.PID.HEX.tmp``, HEX
#: being 4 random bytes): the header's and a key version's files'. Nothing else matches.
TEMP_NAME = re.compile(
    r"\.(keystore\.json|[0-9]+\.(json|key\.pem|pub\.pem|cert\.der))\.[0-9]+\.[0-9a-f]{8}\.tmp"
)


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade found: shown before it writes, returned after."""

    #: Every key version, as its metadata is authenticated (by label, then version).
    keys: tuple[KeyHandle, ...]
    #: Those whose JSON file already carried a valid MAC under the old header: an upgrade
    #: cut short, or an old keystore.json put back (restored from a pre-upgrade copy).
    authenticated: tuple[KeyHandle, ...]
    #: Those with no certificate beside them (N.cert.der): nothing to check them against.
    uncertified: tuple[KeyHandle, ...]
    #: Temp files of killed writes, removed by the upgrade (left alone by a dry run).
    stale_temp_files: int
    #: False when the keystore was already in format 3: nothing to do, nothing shown.
    needed: bool
    #: True once the MACs and the format-3 header are written; False after a dry run.
    written: bool


#: The caller's check of a version's certificate (DER) for what ``hsm`` cannot read (SET's
#: extensions): why it disagrees with the version's metadata; None if it agrees.
CertificateCheck = Callable[[KeyHandle, bytes], str | None]


def legacy_refusal(root: Path) -> PermanentBackendError:
    """The refusal of an older keystore at open: what it is, and the command to run."""
    return PermanentBackendError(
        f"keystore {root} was written by an earlier setpay: its key metadata is not "
        "authenticated; check it and upgrade it once with `setpay keys upgrade-keystore "
        "--keys URI` (a read-only copy must first be copied somewhere writable)"
    )


def refuse_unupgradable(root: Path, passphrase: str) -> None:
    """Refuse an upgrade without a passphrase, or of a path with no keystore.json (checked
    first, before its mode: a mistyped path stays absent)."""
    if not passphrase:
        raise PermanentBackendError(f"empty passphrase for keystore {root}")
    if not (root / "keystore.json").exists():
        raise PermanentBackendError(f"{root} is not a setpay keystore (no keystore.json)")


def plan_upgrade(
    root: Path,
    versions: Sequence[tuple[KeyHandle, bool]],
    certificate: Callable[[KeyHandle], bytes | None],
    check: CertificateCheck | None = None,
) -> tuple[Upgrade, list[Path]]:
    """The upgrade of keystore ``root``'s ``versions`` (each handle, with whether its JSON
    file has a MAC already), each checked against its ``certificate``
    (``check_certificates``), not written yet; and the temp files it is to remove."""
    keys = tuple(handle for handle, _ in versions)
    uncertified = check_certificates([(key, certificate(key)) for key in keys], check)
    stale = stale_temp_files(root)
    authenticated = tuple(handle for handle, has_mac in versions if has_mac)
    plan = Upgrade(keys, authenticated, uncertified, len(stale), needed=True, written=False)
    return plan, stale


def stale_temp_files(root: Path) -> list[Path]:
    """The temp files killed writes left in keystore ``root`` and its label directories.

    Only under the keystore lock, which every writer holds while its temp file exists:
    none found then is still being written.
    """
    keys_dir = root / "keys"
    directories = [root]
    stale: list[Path] = []
    try:
        if keys_dir.is_dir():
            # As the keystore's own walk: label directories, never links to elsewhere.
            with os.scandir(keys_dir) as found:
                labels = [
                    e.name
                    for e in found
                    if LABEL_PATTERN.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
                ]
            directories += [keys_dir / label for label in sorted(labels)]
        for directory in directories:
            names = os.listdir(directory)
            stale += [directory / name for name in sorted(names) if TEMP_NAME.fullmatch(name)]
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot read keystore directory {root}: {exc.strerror or type(exc).__name__}"
        ) from exc
    return stale


def certified_usage(usage: x509.KeyUsage) -> KeyUsage | None:
    """The key usage a certificate's keyUsage stands for; None if none of setpay's.

    As ``setcore.pki.issuance.key_usage`` sets it (``hsm`` knows nothing of SET, so it is
    spelled here): a CA's certificate has keyCertSign (with cRLSign, and digitalSignature
    for the CA's own messages); a key-exchange certificate keyAgreement (EC) or
    keyEncipherment (RSA), without digitalSignature; a signing key's digitalSignature
    alone. A token-sealing key is never certified: a certificate beside one disagrees.
    """
    if usage.key_cert_sign:
        return KeyUsage.CA_SIGNING
    if usage.key_agreement or usage.key_encipherment:
        return None if usage.digital_signature else KeyUsage.KEY_EXCHANGE
    return KeyUsage.SIGNATURE if usage.digital_signature else None


def check_certificates(
    versions: list[tuple[KeyHandle, bytes | None]],
    check: CertificateCheck | None = None,
) -> tuple[KeyHandle, ...]:
    """Check each version's metadata against its certificate (DER, or None: none stored),
    and with ``check`` too where the certificate is one of the version's key.

    The versions without one; ``PermanentBackendError`` naming every disagreement, of every
    version: a certificate of another public key, or unreadable, another usage than the
    metadata's, and whatever ``check`` says.
    """
    found = []
    for handle, der in versions:
        if der is not None:
            found += [(handle, reason) for reason in _disagreements(handle, der, check)]
    refuse_disagreements(found)
    return tuple(handle for handle, der in versions if der is None)


def refuse_disagreements(found: Sequence[tuple[KeyHandle, str]]) -> None:
    """``PermanentBackendError`` naming each version (by label and version) whose metadata
    disagrees with its certificate, and why; nothing if none does."""
    if found:
        raise PermanentBackendError(
            "the key metadata disagrees with the certificate beside it: "
            + "; ".join(f"key {handle.label!r} v{handle.version}: {why}" for handle, why in found)
            + ". Nothing written: restore those versions' files from a backup (or remove "
            "them by hand), then run the upgrade again"
        )


def _disagreements(handle: KeyHandle, der: bytes, check: CertificateCheck | None) -> list[str]:
    """What is wrong with ``der`` as the certificate of ``handle``; empty if it agrees."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    unreadable = f"its certificate ({handle.version}.cert.der) is not DER X.509 setpay can read"
    try:
        certificate = x509.load_der_x509_certificate(der)
        certified_key = certificate.public_key().public_bytes(*spki)
        extensions = certificate.extensions
        _ = certificate.version
    # A version X.509 does not define (InvalidVersion), an extension twice
    # (DuplicateExtension), a general name cryptography does not model
    # (UnsupportedGeneralNameType: an x400Address), none a ValueError, is no certificate
    # setpay reads (as ``setcore.pki.certificate.load_certificate`` lists them).
    except (
        ValueError,
        TypeError,
        CryptoUnsupportedAlgorithm,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ):
        return [unreadable]
    if certified_key != public_key_der(handle.public_key):
        return [f"its certificate is of another public key than {handle.version}.pub.pem's"]
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        found = ["its certificate has no keyUsage"]
    else:
        certified = certified_usage(usage)
        found = [] if certified is handle.usage else [_usage_disagreement(handle, certified)]
    extra = check(handle, der) if check is not None else None
    return found if extra is None else [*found, extra]


def _usage_disagreement(handle: KeyHandle, certified: KeyUsage | None) -> str:
    says = f"a {certified.value} key's" if certified is not None else "none of setpay's"
    return f"the metadata says {handle.usage.value}, its certificate's keyUsage is {says}"
