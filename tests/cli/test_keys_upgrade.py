"""``setpay keys upgrade-keystore``: the one way a keystore an earlier setpay wrote opens again.

An open refuses such a keystore (its key metadata has no MAC, and an automatic upgrade
would MAC whatever an old keystore.json put back found): the command shows every key
version, as ``keys list`` does, warns of a replay, checks each against its certificate
(public key and key usage in ``hsm``, the KEM against SET's kemAlgorithm extension here),
and writes nothing unless ``--yes``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from cli import keys
from hsm.base import KemAlgorithm, KeyAlgorithm, KeyUsage, PublicKey
from hsm.software import SoftwareBackend
from hsm.uri import PASSPHRASE_ENV
from setcore.pki.extensions import KEM_ALGORITHM_OID, kem_extension
from setcore.pki.issuance import key_usage
from tests.cli.command_support import run_command
from tests.hsm.keycheck import certificate_for
from tests.hsm.legacy_keystore import legacy_meta, make_legacy

PASSPHRASE = "cli keystore passphrase"
COMMAND = "setpay keys upgrade-keystore"
#: How every refusal of a version that disagrees with its certificate ends.
REMEDY = (
    ". Nothing written: restore those versions' files from a backup (or remove them by "
    "hand), then run the upgrade again"
)


def _keys(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``setpay keys ARGV...``; (status, stdout, stderr)."""
    return run_command(keys, ["keys", *argv], capsys)


def _files(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the test's keystore goes, its passphrase where the key URI reads it from."""
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    return tmp_path / "keystore"


def _make_keystore(
    directory: Path,
    *,
    old: bool = True,
    certified: bool = False,
    exchange: KeyAlgorithm = KeyAlgorithm.EC_P256,
) -> Path:
    """A keystore with a key-exchange key and a signing key, as an earlier setpay left it
    (``old``: no MAC) or as this one writes it; ``directory``.

    ``certified``: each with the certificate setpay's CAs give it (keyUsage, and the KEM
    of the key-exchange key), and a token-sealing key beside them, never certified.
    """
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    kex = backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, exchange)
    sig = backend.generate("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
    if certified:
        usage = key_usage(encipher=True) if exchange.is_rsa else key_usage(agree=True)
        backend.store_certificate(kex, _certificate(kex.public_key, usage, kex.kem))
        backend.store_certificate(sig, _certificate(sig.public_key, key_usage(signature=True)))
        backend.generate("gw-token", KeyUsage.TOKEN_SEALING, KeyAlgorithm.EC_P256)
    backend.close()
    if old:
        make_legacy(directory, PASSPHRASE)
    return directory


@pytest.fixture
def old_keystore(directory: Path) -> Path:
    """A keystore as an earlier setpay left it: a key-exchange key and a signing key."""
    return _make_keystore(directory)


@pytest.fixture
def old_certified_keystore(directory: Path) -> Path:
    """The same with their certificates, and a token-sealing key without one."""
    return _make_keystore(directory, certified=True)


def _edit(directory: Path, label: str, **fields: object) -> None:
    """Edit version 1 of ``label`` as whoever can write the directory may (no MAC to keep)."""
    path = directory / "keys" / label / "1.json"
    path.write_text(legacy_meta({**json.loads(path.read_text()), **fields}))


def _refused(directory: Path, capsys: pytest.CaptureFixture[str], disagreement: str) -> None:
    """A dry run and ``--yes`` both refuse naming ``disagreement``, and write nothing."""
    files = _files(directory)
    for yes in ([], ["--yes"]):
        code, out, err = _keys(["upgrade-keystore", "--keys", f"soft:{directory}", *yes], capsys)
        assert _files(directory) == files
        assert (code, out) == (1, "")
        assert err == (
            f"{COMMAND}: the key metadata disagrees with the certificate beside it: "
            f"{disagreement}{REMEDY}\n"
        )


def test_an_old_keystore_is_refused_then_upgraded_then_listed(
    old_keystore: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"soft:{old_keystore}"
    files = _files(old_keystore)
    for argv in (["list"], ["delete", "--label", "gw-kex", "--all-versions"]):
        code, out, err = _keys([*argv, "--keys", uri], capsys)
        assert (code, out) == (1, "")
        assert (
            f"keystore {old_keystore} was written by an earlier setpay: its key metadata is not "
            "authenticated; check it and upgrade it once with `setpay keys upgrade-keystore "
            "--keys URI` (a read-only copy must first be copied somewhere writable)\n"
        ) in err
    assert _files(old_keystore) == files

    # Without --yes, a dry run: shown, nothing written, still refused by every command.
    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
    assert _files(old_keystore) == files
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"keystore {old_keystore}: the key metadata to authenticate:"
    assert lines[-2:] == [
        "no certificate to check against: gw-kex v1, gw-sig v1",
        "nothing written: run again with --yes to authenticate these",
    ]
    shown = lines[:-1]
    assert _keys(["list", "--keys", uri], capsys)[0] == 1

    code, out, err = _keys(["upgrade-keystore", "--keys", uri, "--yes"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:-1] == shown  # what the dry run showed is what is authenticated
    assert lines[-1] == (
        f"upgraded keystore {old_keystore}: the metadata of 2 key version(s) is "
        "authenticated (MAC under the passphrase) and keystore.json is format 3; an earlier "
        "setpay no longer opens it"
    )
    table = lines[1:-2]
    # The very table `keys list` prints, now that the keystore opens.
    code, listed, _ = _keys(["list", "--keys", uri], capsys)
    assert code == 0
    assert table == listed.splitlines()
    assert [line.split()[:5] for line in table[1:]] == [
        ["gw-kex", "1", "key-exchange", "ec-p256", "p256-hkdf-sha256"],
        ["gw-sig", "1", "signature", "ed25519", "-"],
    ]
    code, out, err = _keys(["upgrade-keystore", "--keys", uri, "--yes"], capsys)
    assert (code, out, err) == (
        0,
        f"keystore {old_keystore} is already upgraded (format 3): nothing to do\n",
        "",
    )


def test_a_pre_upgrade_header_put_back_is_refused_and_the_upgrade_warns(
    directory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"soft:{directory}"
    # A keystore as an upgrade leaves it (every N.json with its MAC, format 3), and the
    # keystore.json of a backup taken before that upgrade (same salt, old format).
    _make_keystore(directory, old=False)
    shutil.copytree(directory, tmp_path / "backup")
    make_legacy(tmp_path / "backup", PASSPHRASE)
    saved_header = (tmp_path / "backup" / "keystore.json").read_bytes()
    # Someone who can write the directory makes the key-exchange key sign, MAC dropped,
    # and puts back the keystore.json from before the upgrade.
    _edit(directory, "gw-kex", usage="signature", kem=None)
    path = directory / "keys" / "gw-kex" / "1.json"
    (directory / "keystore.json").write_bytes(saved_header)
    code, _, err = _keys(["list", "--keys", uri], capsys)
    assert code == 1
    assert "was written by an earlier setpay" in err
    assert "mac" not in json.loads(path.read_text())

    files = _files(directory)
    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
    assert (code, _files(directory)) == (0, files)
    assert err == (
        f"{COMMAND}: WARNING: keystore.json is older than its entries (an upgrade cut "
        "short, or restored from a pre-upgrade copy?). These already carry a valid MAC: "
        "gw-sig v1. Check every key below before using the keystore.\n"
    )
    # What the key now says is shown, for the operator to see it is not what it was.
    assert out.splitlines()[2].split()[:3] == ["gw-kex", "1", "signature"]


def test_a_wrong_passphrase_upgrades_nothing(
    old_keystore: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "not the passphrase")
    files = _files(old_keystore)
    for yes in ([], ["--yes"]):
        code, out, err = _keys(["upgrade-keystore", "--keys", f"soft:{old_keystore}", *yes], capsys)
        assert (code, out) == (1, "")
        assert err == f"{COMMAND}: wrong passphrase for keystore {old_keystore}\n"
        assert _files(old_keystore) == files


@pytest.mark.parametrize(
    "uri", ["soft:ephemeral", "pkcs11:module=/x.so;token=t;pin-source=env:TOKEN_PIN"]
)
def test_only_a_keystore_directory_is_upgraded(
    uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"{COMMAND}: ")
    assert err.endswith("is not a software keystore (soft:DIR): only those are upgraded\n")


def test_a_missing_keystore_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    directory = tmp_path / "nothing-here"
    directory.mkdir(mode=0o700)
    code, _, err = _keys(["upgrade-keystore", "--keys", f"soft:{directory}", "--yes"], capsys)
    assert code == 1
    assert err == f"{COMMAND}: {directory} is not a setpay keystore (no keystore.json)\n"
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize("yes", [[], ["--yes"]])
def test_a_mistyped_keystore_path_is_not_created(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    yes: list[str],
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    typo = tmp_path / "keystroe"
    code, out, err = _keys(["upgrade-keystore", "--keys", f"soft:{typo}", *yes], capsys)
    assert (code, out) == (1, "")
    assert err == f"{COMMAND}: {typo} is not a setpay keystore (no keystore.json)\n"
    assert list(tmp_path.iterdir()) == []


def test_a_signing_key_relabelled_a_cas_with_every_mac_stripped_is_refused(
    old_certified_keystore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The review's demo: no MAC left to warn of a replay; the certificate still tells.
    shutil.copytree(old_certified_keystore, tmp_path / "as-made")
    _edit(old_certified_keystore, "gw-sig", usage="ca-signing")
    _refused(
        old_certified_keystore,
        capsys,
        "key 'gw-sig' v1: the metadata says ca-signing, its certificate's keyUsage is a "
        "signature key's",
    )
    # As it was made, the same keystore is shown checked, and the token key named.
    code, out, err = _keys(["upgrade-keystore", "--keys", f"soft:{tmp_path / 'as-made'}"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[-3:] == [
        "agrees with its certificate (public key, key usage, KEM): gw-kex v1, gw-sig v1",
        "no certificate to check against: gw-token v1",
        "nothing written: run again with --yes to authenticate these",
    ]


@pytest.mark.parametrize(
    ("exchange", "label", "kem", "disagreement"),
    [
        # A key transport downgraded: the key would accept what its certificate refuses.
        pytest.param(
            KeyAlgorithm.RSA_2048,
            "gw-kex",
            "rsa-oaep-sha1",
            "the metadata says KEM rsa-oaep-sha1, its certificate's kemAlgorithm is "
            "rsa-oaep-sha256",
            id="rsa-downgraded",
        ),
        pytest.param(
            KeyAlgorithm.EC_P256,
            "gw-kex",
            "rsa-oaep-sha256",
            "the metadata says KEM rsa-oaep-sha256, its certificate's kemAlgorithm is "
            "p256-hkdf-sha256",
            id="ec-given-rsa",
        ),
        pytest.param(
            KeyAlgorithm.EC_P256,
            "gw-kex",
            None,
            "the metadata names no KEM, its certificate's kemAlgorithm is p256-hkdf-sha256",
            id="ec-kem-dropped",
        ),
        # A signing key given a key transport its certificate does not name.
        pytest.param(
            KeyAlgorithm.EC_P256,
            "gw-sig",
            "p256-hkdf-sha256",
            "the metadata says KEM p256-hkdf-sha256, its certificate has no kemAlgorithm",
            id="signing-key-given-kem",
        ),
    ],
)
def test_a_kem_edited_against_its_certificate_is_refused(
    directory: Path,
    capsys: pytest.CaptureFixture[str],
    exchange: KeyAlgorithm,
    label: str,
    kem: str | None,
    disagreement: str,
) -> None:
    _make_keystore(directory, certified=True, exchange=exchange)
    _edit(directory, label, kem=kem)
    _refused(directory, capsys, f"key {label!r} v1: {disagreement}")


@pytest.mark.parametrize("exchange", [KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048])
def test_a_kem_that_agrees_with_its_certificate_is_upgraded(
    directory: Path, capsys: pytest.CaptureFixture[str], exchange: KeyAlgorithm
) -> None:
    _make_keystore(directory, certified=True, exchange=exchange)
    uri = f"soft:{directory}"
    code, out, err = _keys(["upgrade-keystore", "--keys", uri, "--yes"], capsys)
    assert (code, err) == (0, "")
    assert "agrees with its certificate (public key, key usage, KEM): gw-kex v1, gw-sig v1\n" in out
    assert out.splitlines()[-1].startswith(f"upgraded keystore {directory}: ")
    code, listed, _ = _keys(["list", "--keys", uri], capsys)
    assert code == 0
    kem = "p256-hkdf-sha256" if exchange is KeyAlgorithm.EC_P256 else "rsa-oaep-sha256"
    row = listed.splitlines()[1].split()[:5]
    assert row == ["gw-kex", "1", "key-exchange", exchange.value, kem]


@pytest.mark.parametrize(
    ("extension", "disagreement"),
    [
        # setpay's CAs name the KEM on every key-exchange certificate (and peers refuse one
        # without): missing, it is a fact the certificate lacks, as a missing keyUsage is.
        pytest.param(
            None,
            "the metadata says KEM p256-hkdf-sha256, its certificate has no kemAlgorithm",
            id="missing",
        ),
        pytest.param(  # a UTF8String, "rot13": no key transport setpay knows
            x509.UnrecognizedExtension(KEM_ALGORITHM_OID, b"\x0c\x05rot13"),
            "its certificate's kemAlgorithm extension is not one setpay can read",
            id="unknown-kem",
        ),
    ],
)
def test_a_key_exchange_certificate_without_a_kem_setpay_reads_is_refused(
    old_certified_keystore: Path,
    capsys: pytest.CaptureFixture[str],
    extension: x509.UnrecognizedExtension | None,
    disagreement: str,
) -> None:
    version = old_certified_keystore / "keys" / "gw-kex"
    public_key = serialization.load_pem_public_key((version / "1.pub.pem").read_bytes())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    named = [(extension, False)] if extension is not None else []
    der = certificate_for(public_key, extensions=[(key_usage(agree=True), True), *named])
    (version / "1.cert.der").write_bytes(der)
    _refused(old_certified_keystore, capsys, f"key 'gw-kex' v1: {disagreement}")


def test_a_certificate_with_an_extension_twice_is_refused_as_unreadable(
    old_certified_keystore: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # cryptography raises DuplicateExtension (no ValueError) once the extensions are read:
    # before, it escaped as a traceback.
    version = old_certified_keystore / "keys" / "gw-kex"
    public_key = serialization.load_pem_public_key((version / "1.pub.pem").read_bytes())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    kem = kem_extension(KemAlgorithm.P256_HKDF_SHA256)
    arcs = KEM_ALGORITHM_OID.dotted_string.rsplit(".", 1)[0]
    other = x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{arcs}.5"), kem.value)
    usage = (key_usage(agree=True), True)
    der = certificate_for(public_key, extensions=[usage, (kem, False), (other, False)])
    at = der.rfind(b"\x05", 0, der.rfind(kem.value))  # the last byte of the other's OID
    der = der[:at] + b"\x04" + der[at + 1 :]  # now the KEM's: the extension is there twice
    with pytest.raises(x509.DuplicateExtension):
        _ = x509.load_der_x509_certificate(der).extensions
    (version / "1.cert.der").write_bytes(der)
    _refused(
        old_certified_keystore,
        capsys,
        "key 'gw-kex' v1: its certificate (1.cert.der) is not DER X.509 setpay can read",
    )


def test_a_certificate_of_a_version_x509_does_not_define_is_refused_as_unreadable(
    old_certified_keystore: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # cryptography's InvalidVersion is no ValueError: before, a traceback.
    der_path = old_certified_keystore / "keys" / "gw-kex" / "1.cert.der"
    der = der_path.read_bytes()
    at = der.index(bytes.fromhex("a003020102"))  # [0] EXPLICIT INTEGER 2: v3
    der_path.write_bytes(der[: at + 4] + b"\x05" + der[at + 5 :])
    _refused(
        old_certified_keystore,
        capsys,
        "key 'gw-kex' v1: its certificate (1.cert.der) is not DER X.509 setpay can read",
    )


def test_a_certificate_with_an_x400_address_is_refused_as_unreadable(
    old_certified_keystore: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A subjectAltName holding an x400Address: cryptography raises
    # UnsupportedGeneralNameType (no ValueError) once the extensions are read: before, it
    # escaped as a traceback. The certificate names the key's own KEM.
    version = old_certified_keystore / "keys" / "gw-kex"
    public_key = serialization.load_pem_public_key((version / "1.pub.pem").read_bytes())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    x400 = x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bytes.fromhex("3004a3020500")
    )
    kem = kem_extension(KemAlgorithm.P256_HKDF_SHA256)
    usage = (key_usage(agree=True), True)
    der = certificate_for(public_key, extensions=[usage, (kem, False), (x400, False)])
    with pytest.raises(x509.UnsupportedGeneralNameType):
        _ = x509.load_der_x509_certificate(der).extensions
    (version / "1.cert.der").write_bytes(der)
    _refused(
        old_certified_keystore,
        capsys,
        "key 'gw-kex' v1: its certificate (1.cert.der) is not DER X.509 setpay can read",
    )


def test_one_refusal_names_every_disagreement_of_every_version(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before, hsm's refusal (key usage) came first and the KEM's only on the next run.
    _make_keystore(directory, certified=True, exchange=KeyAlgorithm.RSA_2048)
    _edit(directory, "gw-sig", usage="ca-signing")
    _edit(directory, "gw-kex", kem="rsa-oaep-sha1", usage="signature")
    _refused(
        directory,
        capsys,
        "key 'gw-kex' v1: the metadata says signature, its certificate's keyUsage is a "
        "key-exchange key's; key 'gw-kex' v1: the metadata says KEM rsa-oaep-sha1, its "
        "certificate's kemAlgorithm is rsa-oaep-sha256; key 'gw-sig' v1: the metadata says "
        "ca-signing, its certificate's keyUsage is a signature key's",
    )


def _certificate(
    public_key: PublicKey, usage: x509.KeyUsage, kem: KemAlgorithm | None = None
) -> bytes:
    """A certificate of ``public_key`` with the keyUsage setpay's CAs give (``usage``), and
    the kemAlgorithm extension (non-critical, as setpay marks its own) if ``kem``."""
    named = [(kem_extension(kem), False)] if kem is not None else []
    return certificate_for(public_key, extensions=[(usage, True), *named])
