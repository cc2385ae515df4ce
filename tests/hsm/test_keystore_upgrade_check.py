"""The caller's check of an upgrade (``Keystore.upgrade(check=...)``: what ``hsm`` cannot
read, SET's kemAlgorithm for the cli) runs with ``hsm``'s own, and one refusal names
every disagreement of every version: before, ``hsm``'s came first, and the caller's only
on the next run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from hsm.base import KeyHandle
from hsm.errors import PermanentBackendError
from hsm.keystore import Keystore
from hsm.keystore_upgrade import Upgrade
from setcore.pki.issuance import key_usage

from .keycheck import certificate_for
from .legacy_keystore import legacy_meta
from .test_keystore_metadata import PASSPHRASE, _certified_old_keystore, _files, _meta_path

REMEDY = (
    ". Nothing written: restore those versions' files from a backup (or remove them by "
    "hand), then run the upgrade again"
)


class Checker:
    """A caller's check that finds fault with the versions it is told to, and records
    which it was asked about."""

    def __init__(self, *faulty: str) -> None:
        self.faulty = faulty
        self.asked: list[str] = []

    def __call__(self, handle: KeyHandle, der: bytes) -> str | None:
        assert x509.load_der_x509_certificate(der)  # only certificates hsm could read
        self.asked.append(handle.label)
        return "the caller says no" if handle.label in self.faulty else None


def _refusal(directory: Path, check: Checker | None = None) -> str:
    """The refusal of a dry run and of an upgrade (the same); nothing shown or written."""
    files = _files(directory)
    said = []
    checking = {} if check is None else {"check": check}
    for dry_run in (True, False):
        shown: list[Upgrade] = []
        with pytest.raises(PermanentBackendError) as refused:
            Keystore.upgrade(directory, PASSPHRASE, shown.append, dry_run=dry_run, **checking)
        assert (shown, _files(directory)) == ([], files)
        said.append(str(refused.value))
    assert said[0] == said[1]
    return said[0]


def test_the_callers_disagreements_are_named_with_hsms_in_one_refusal(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    _certified_old_keystore(directory)
    path = _meta_path(directory, "sig")
    path.write_text(legacy_meta({**json.loads(path.read_text()), "usage": "ca-signing"}))
    check = Checker("kex", "sig")
    assert _refusal(directory, check) == (
        "the key metadata disagrees with the certificate beside it: key 'kex' v1: the "
        "caller says no; key 'sig' v1: the metadata says ca-signing, its certificate's "
        f"keyUsage is a signature key's; key 'sig' v1: the caller says no{REMEDY}"
    )
    # Every certified version, once per run; never the token key, which has none.
    assert check.asked == ["ca", "kex", "rsa-kex", "sig"] * 2


def test_the_caller_is_not_asked_about_a_certificate_hsm_cannot_vouch_for(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ks"
    _certified_old_keystore(directory)
    (directory / "keys" / "ca" / "1.cert.der").write_bytes(b"not a certificate")
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    (directory / "keys" / "sig" / "1.cert.der").write_bytes(
        certificate_for(other, extensions=[(key_usage(signature=True), True)])
    )
    check = Checker("ca", "sig")
    assert _refusal(directory, check) == (
        "the key metadata disagrees with the certificate beside it: key 'ca' v1: its "
        "certificate (1.cert.der) is not DER X.509 setpay can read; key 'sig' v1: its "
        f"certificate is of another public key than 1.pub.pem's{REMEDY}"
    )
    assert check.asked == ["kex", "rsa-kex"] * 2


def test_a_certificate_with_an_extension_twice_is_unreadable_not_a_traceback(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ks"
    _certified_old_keystore(directory)
    label_dir = directory / "keys" / "sig"
    public_key = serialization.load_pem_public_key((label_dir / "1.pub.pem").read_bytes())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    # Made with two extensions whose OIDs differ in their last byte, then made the same.
    value = b"\x0c\x02ab"
    twice = [x509.UnrecognizedExtension(x509.ObjectIdentifier(f"1.2.3.{n}"), value) for n in (4, 5)]
    usage = (key_usage(signature=True), True)
    der = certificate_for(public_key, extensions=[usage, *((e, False) for e in twice)])
    at = der.rfind(b"\x05", 0, der.rfind(value))
    der = der[:at] + b"\x04" + der[at + 1 :]
    with pytest.raises(x509.DuplicateExtension):
        _ = x509.load_der_x509_certificate(der).extensions
    (label_dir / "1.cert.der").write_bytes(der)
    assert _refusal(directory) == (
        "the key metadata disagrees with the certificate beside it: key 'sig' v1: its "
        f"certificate (1.cert.der) is not DER X.509 setpay can read{REMEDY}"
    )


def test_a_certificate_with_an_x400_address_is_unreadable_not_a_traceback(
    tmp_path: Path,
) -> None:
    # A subjectAltName holding an x400Address: cryptography models no such general name
    # and raises UnsupportedGeneralNameType, no ValueError, once the extensions are read.
    directory = tmp_path / "ks"
    _certified_old_keystore(directory)
    label_dir = directory / "keys" / "sig"
    public_key = serialization.load_pem_public_key((label_dir / "1.pub.pem").read_bytes())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    x400 = x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bytes.fromhex("3004a3020500")
    )
    der = certificate_for(public_key, extensions=[(key_usage(signature=True), True), (x400, False)])
    with pytest.raises(x509.UnsupportedGeneralNameType):
        _ = x509.load_der_x509_certificate(der).extensions
    (label_dir / "1.cert.der").write_bytes(der)
    checker = Checker()
    assert _refusal(directory, checker) == (
        "the key metadata disagrees with the certificate beside it: key 'sig' v1: its "
        f"certificate (1.cert.der) is not DER X.509 setpay can read{REMEDY}"
    )
    assert "sig" not in checker.asked  # hsm cannot vouch for it: the caller is not asked
