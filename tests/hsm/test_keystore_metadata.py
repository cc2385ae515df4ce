"""The software keystore's key metadata is authenticated: edited on disk, it is refused.

Whoever can write the keystore directory, without the passphrase, must not be able to
change what a key may do (a key-exchange key made to sign, a KEM downgraded), hand one
key's metadata to another, or slip in metadata in the old, unauthenticated format.
Keystores written before are refused at open, never upgraded by it (a keystore.json from
before the upgrade put back would have the edited metadata MAC'd): the operator upgrades
them once (``Keystore.upgrade``, ``setpay keys upgrade-keystore``).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hsm import keystore as keystore_module
from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage, PublicKey
from hsm.errors import PermanentBackendError
from hsm.keystore import Keystore
from hsm.keystore_upgrade import Upgrade, stale_temp_files
from hsm.software import SoftwareBackend
from setcore.pki.issuance import key_usage

from .keycheck import certificate_for, encapsulate, verify
from .legacy_keystore import derived_key, legacy_meta, make_legacy

PASSPHRASE = "keystore passphrase for tests"


def _meta_path(directory: Path, label: str, version: int = 1) -> Path:
    return directory / "keys" / label / f"{version}.json"


def _edit(path: Path, **changes: Any) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta, indent=1))


def _altered(label: str, version: int = 1) -> str:
    return rf"{version}\.json: key '{label}' v{version} is damaged or altered"


#: What an open says of a keystore an earlier setpay wrote (and nothing else).
OLD_KEYSTORE = (
    r"was written by an earlier setpay: its key metadata is not authenticated; check it "
    r"and upgrade it once with `setpay keys upgrade-keystore --keys URI` \(a read-only "
    r"copy must first be copied somewhere writable\)"
)


def _upgrade(directory: Path) -> tuple[Upgrade, list[Upgrade]]:
    """Upgrade ``directory``; what it returned, and what it showed before writing."""
    shown: list[Upgrade] = []
    return Keystore.upgrade(directory, PASSPHRASE, shown.append), shown


def _files(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def _pre_upgrade_header(directory: Path, backup: Path) -> bytes:
    """The keystore.json a backup of ``directory`` taken before its upgrade holds."""
    shutil.copytree(directory, backup)
    make_legacy(backup, PASSPHRASE)
    return (backup / "keystore.json").read_bytes()


#: A key of a keystore a test writes: label, usage, algorithm (as ``generate`` takes them).
Key = tuple[str, KeyUsage, KeyAlgorithm]
SIG: Key = ("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
KEX: Key = ("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
#: The gateway's key-exchange key, as the tests edit it to sign; and one of RSA.
GW_KEX: Key = ("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
GW_KEX_RSA: Key = ("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)


def _keystore(
    directory: Path, *keys: Key, certified: Mapping[Key, x509.KeyUsage] | None = None
) -> list[KeyHandle]:
    """A keystore of ``keys``, generated in that order, those ``certified`` names with a
    certificate of the keyUsage it gives stored beside them; closed, the keys' handles."""
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    for spec in keys:
        key = backend.generate(*spec)
        if certified and spec in certified:
            backend.store_certificate(key, _certificate(key.public_key, certified[spec]))
    before = backend.list_keys()
    backend.close()
    return before


def _old_keystore(directory: Path, labels: tuple[str, ...] = ("a", "b", "c")) -> list[KeyHandle]:
    """A keystore of EC signing keys ``labels`` as a setpay from before authenticated
    metadata left it; their handles."""
    before = _keystore(
        directory, *((label, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256) for label in labels)
    )
    make_legacy(directory, PASSPHRASE)
    return before


def test_a_key_exchange_key_edited_to_sign_does_not_sign(tmp_path: Path) -> None:
    # The known limitation this closes: usage edited in N.json made a key-exchange key sign.
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    exchange = backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    _edit(_meta_path(directory, "gw-kex"), usage="signature", kem=None)
    # A process that holds the key sees the file changed, reads it again, and refuses.
    with pytest.raises(PermanentBackendError, match=_altered("gw-kex") + r" \(its MAC"):
        backend.sign(exchange, b"data")
    with pytest.raises(PermanentBackendError, match=_altered("gw-kex") + ".*it is not used"):
        SoftwareBackend.open(directory, PASSPHRASE)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("usage", "signature"),
        ("algorithm", "rsa-3072"),
        ("kem", "rsa-oaep-sha1"),  # a downgrade of the key transport
        ("label", "gw-sig"),
        ("version", 2),
        ("mac", base64.b64encode(bytes(32)).decode()),
    ],
)
def test_each_bound_field_edited_on_disk_is_refused_at_load(
    tmp_path: Path, field: str, value: object
) -> None:
    directory = tmp_path / "ks"
    _keystore(directory, ("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.RSA_2048), GW_KEX_RSA)
    _edit(_meta_path(directory, "gw-kex"), **{field: value})
    with pytest.raises(PermanentBackendError, match=_altered("gw-kex") + r" \(its MAC"):
        SoftwareBackend.open(directory, PASSPHRASE)


def test_metadata_moved_onto_another_key_is_refused(tmp_path: Path) -> None:
    # The signing key's N.json and N.pub.pem put beside the key-exchange key's key file,
    # or just its public key file put beside the key-exchange key's metadata.
    directory = tmp_path / "ks"
    _keystore(directory, SIG, SIG, KEX)
    kex, sig = directory / "keys" / "kex", directory / "keys" / "sig"
    (kex / "1.pub.pem").write_bytes((sig / "2.pub.pem").read_bytes())
    with pytest.raises(PermanentBackendError, match=_altered("kex")):
        SoftwareBackend.open(directory, PASSPHRASE)
    # Version 2's files as version 1's: its MAC holds, what it says disagrees.
    for name in ("json", "pub.pem", "key.pem"):
        (sig / f"1.{name}").write_bytes((sig / f"2.{name}").read_bytes())
    (kex / "1.json").unlink()
    with pytest.raises(PermanentBackendError, match=r"1\.json: names disagree"):
        SoftwareBackend.open(directory, PASSPHRASE)


def test_metadata_without_a_mac_is_refused_once_the_keystore_has_them(tmp_path: Path) -> None:
    # The old format, no MAC: what an attacker would write to get the old behaviour back
    # (or a process still running the code from before, making a new version).
    directory = tmp_path / "ks"
    _keystore(directory, GW_KEX)
    path = _meta_path(directory, "gw-kex")
    meta = json.loads(path.read_text())
    path.write_text(legacy_meta({**meta, "usage": "signature", "kem": None}))
    refusal = _altered("gw-kex") + r" \(it has no MAC, and every entry of this keystore has one\)"
    with pytest.raises(PermanentBackendError, match=refusal):
        SoftwareBackend.open(directory, PASSPHRASE)
    assert json.loads(path.read_text())["format"] == 1  # refused, not upgraded


def test_an_upgraded_header_edited_back_to_the_old_format_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    SoftwareBackend.open(directory, PASSPHRASE).generate(
        "gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256
    )
    header_path = directory / "keystore.json"
    header = json.loads(header_path.read_text())
    header["format"] = 2  # base64 as format 3: only the format says otherwise
    header_path.write_text(json.dumps(header))
    meta = _meta_path(directory, "gw-kex").read_bytes()
    with pytest.raises(PermanentBackendError, match=OLD_KEYSTORE):
        SoftwareBackend.open(directory, PASSPHRASE)
    # The format-3 check is of another string: edited back, the passphrase check fails,
    # so the upgrade cannot be made to run over an upgraded keystore's entries.
    with pytest.raises(PermanentBackendError, match="wrong passphrase"):
        _upgrade(directory)
    assert _meta_path(directory, "gw-kex").read_bytes() == meta


def test_the_refusal_holds_nothing_of_the_key_or_the_passphrase(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    _keystore(directory, GW_KEX)
    label_dir = directory / "keys" / "gw-kex"
    macs = [json.loads((label_dir / "1.json").read_text()).get("mac", "")]
    _edit(label_dir / "1.json", usage="signature", kem=None)
    with pytest.raises(PermanentBackendError) as caught:
        SoftwareBackend.open(directory, PASSPHRASE)
    said = []
    error: BaseException | None = caught.value
    while error is not None:  # the message and everything chained to it
        said.append(f"{error!s} {error!r}")
        error = error.__cause__ or error.__context__
    text = " ".join(said)
    assert "'gw-kex' v1" in text
    derived = derived_key(directory, PASSPHRASE)
    secrets = [PASSPHRASE, derived.hex(), base64.b64encode(derived).decode(), *filter(None, macs)]
    for name in ("1.key.pem", "1.pub.pem"):
        lines = (label_dir / name).read_text().splitlines()
        secrets += [line for line in lines if line and not line.startswith("-----")]
    assert [secret for secret in secrets if secret in text] == []


@pytest.mark.parametrize("header_format", [1, 2])
def test_an_old_keystore_is_refused_at_open_until_upgraded_then_works(
    tmp_path: Path, header_format: int
) -> None:
    directory = tmp_path / "ks"
    before = _keystore(directory, ("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256), GW_KEX_RSA)
    make_legacy(directory, PASSPHRASE, header_format)
    (directory / ".lock").unlink()
    files = _files(directory)

    # Refused before any lock is taken or anything written (a read-only copy alike).
    with pytest.raises(PermanentBackendError, match=rf"keystore {directory} {OLD_KEYSTORE}"):
        SoftwareBackend.open(directory, PASSPHRASE)
    assert _files(directory) == files
    assert not (directory / ".lock").exists()

    done, shown = _upgrade(directory)
    # Shown every version as it was about to be authenticated, before anything changed.
    assert [plan.keys for plan in shown] == [tuple(before)]
    assert (done.keys, done.authenticated, done.needed, done.written) == (
        tuple(before),
        (),
        True,
        True,
    )
    header = json.loads((directory / "keystore.json").read_text())
    assert header["format"] == 3
    for label in ("gw-sig", "gw-kex"):
        meta = json.loads(_meta_path(directory, label).read_text())
        assert meta["format"] == 2
        assert len(base64.b64decode(meta["mac"], validate=True)) == 32
    # The key files are as they were: the passphrase-derived key, their password, is too.
    key_files = {path: data for path, data in files.items() if path.suffix == ".pem"}
    assert {path: path.read_bytes() for path in key_files} == key_files
    assert not list(directory.rglob("*.tmp"))

    reopened = SoftwareBackend.open(directory, PASSPHRASE)
    assert reopened.list_keys() == before
    signing, exchange = reopened.get("gw-sig"), reopened.get("gw-kex")
    verify(signing.public_key, reopened.sign(signing, b"data"), b"data")
    assert exchange.kem is not None
    ciphertext, expected = encapsulate(exchange)
    assert reopened.decapsulate(exchange, exchange.kem, ciphertext) == expected
    reopened.close()
    # Once is enough: a second upgrade finds nothing to do and writes nothing.
    files = _files(directory)
    again, shown = _upgrade(directory)
    assert (again.needed, again.written, shown, _files(directory)) == (False, False, [], files)
    # And from now on, an edit is refused.
    _edit(_meta_path(directory, "gw-kex"), usage="signature", kem=None)
    with pytest.raises(PermanentBackendError, match=_altered("gw-kex")):
        SoftwareBackend.open(directory, PASSPHRASE)


def test_a_pre_upgrade_header_put_back_is_refused_at_open_not_silently_upgraded(
    tmp_path: Path,
) -> None:
    # The review's replay: keystore.json from before the upgrade (any backup has one)
    # put back beside a key-exchange key's N.json edited, MAC dropped, to sign.
    directory = tmp_path / "ks"
    _keystore(directory, KEX, SIG)
    saved_header = _pre_upgrade_header(directory, tmp_path / "backup")
    path = _meta_path(directory, "kex")
    path.write_text(
        legacy_meta({**json.loads(path.read_text()), "usage": "signature", "kem": None})
    )
    (directory / "keystore.json").write_bytes(saved_header)
    files = _files(directory)

    with pytest.raises(PermanentBackendError, match=OLD_KEYSTORE):
        SoftwareBackend.open(directory, PASSPHRASE)
    assert _files(directory) == files  # nothing MAC'd
    assert "mac" not in json.loads(path.read_text())

    # The operator who runs the upgrade is told, and shown what the key now says.
    done, shown = _upgrade(directory)
    assert [key.label for key in done.authenticated] == ["sig"]
    assert [(key.label, key.usage) for key in shown[0].keys] == [
        ("kex", KeyUsage.SIGNATURE),
        ("sig", KeyUsage.SIGNATURE),
    ]


def test_an_upgrade_writes_nothing_if_an_entry_with_a_mac_fails_it(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    _old_keystore(directory)
    # "b" has a MAC, not of what it says: altered since it was authenticated.
    _edit(_meta_path(directory, "b"), format=2, mac=base64.b64encode(bytes(32)).decode())
    files = _files(directory)
    with pytest.raises(PermanentBackendError, match=_altered("b") + r" \(its MAC"):
        _upgrade(directory)
    assert _files(directory) == files


def test_an_upgrade_refused_by_whoever_checks_the_keys_writes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    _old_keystore(directory)
    files = _files(directory)

    def refuse(plan: Upgrade) -> None:
        raise PermanentBackendError(f"{len(plan.keys)} keys not as expected")

    with pytest.raises(PermanentBackendError, match="3 keys not as expected"):
        Keystore.upgrade(directory, PASSPHRASE, refuse)
    assert _files(directory) == files


def test_an_upgrade_cut_short_is_taken_up_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "ks"
    before = _old_keystore(directory)
    write = keystore_module._write_atomic
    written: list[str] = []

    def cut_short(path: Path, data: bytes) -> None:
        # The process dies (here: the disk fills) after the first file it upgrades.
        if written:
            raise PermanentBackendError(f"cannot write {path}: No space left on device")
        written.append(path.name)
        write(path, data)

    monkeypatch.setattr(keystore_module, "_write_atomic", cut_short)
    with pytest.raises(PermanentBackendError, match="cannot write"):
        _upgrade(directory)
    monkeypatch.undo()
    # The header is written last: still an old keystore, with one entry upgraded.
    assert json.loads((directory / "keystore.json").read_text())["format"] == 2
    formats = sorted(json.loads(p.read_text())["format"] for p in directory.glob("keys/*/1.json"))
    assert formats == [1, 1, 2]
    with pytest.raises(PermanentBackendError, match=OLD_KEYSTORE):
        SoftwareBackend.open(directory, PASSPHRASE)

    # The next upgrade says that one had its MAC already (as a replay would), and ends it.
    done, _ = _upgrade(directory)
    assert [key.label for key in done.authenticated] == ["a"]
    reopened = SoftwareBackend.open(directory, PASSPHRASE)
    assert reopened.list_keys() == before
    assert json.loads((directory / "keystore.json").read_text())["format"] == 3
    assert {json.loads(p.read_text())["format"] for p in directory.glob("keys/*/1.json")} == {2}
    key = reopened.get("b")
    verify(key.public_key, reopened.sign(key, b"data"), b"data")


def test_an_old_keystore_upgraded_by_several_at_once_is_upgraded_once(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    _old_keystore(directory, ("k",))
    done: list[Upgrade] = []
    failed: list[BaseException] = []

    def upgrade_it() -> None:
        try:
            done.append(Keystore.upgrade(directory, PASSPHRASE, lambda plan: None))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=upgrade_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    assert sorted(each.written for each in done) == [False, False, False, True]
    reopened = SoftwareBackend.open(directory, PASSPHRASE)
    key = reopened.get("k")
    verify(key.public_key, reopened.sign(key, b"data"), b"data")


def test_an_upgrade_removes_the_temp_files_of_killed_writes_and_nothing_else(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ks"
    _old_keystore(directory, ("k",))
    label_dir = directory / "keys" / "k"
    stale = [
        directory / ".keystore.json.4242.0a1b2c3d.tmp",
        label_dir / ".1.json.4242.deadbeef.tmp",
        label_dir / ".2.key.pem.77.00ff00ff.tmp",
    ]
    kept = [label_dir / "notes.tmp", label_dir / ".1.json.tmp", directory / ".x.1.abcdef01.tmp"]
    for path in stale + kept:
        path.write_text("left behind")
    done, _ = _upgrade(directory)
    assert done.stale_temp_files == len(stale)
    assert [path.exists() for path in stale + kept] == [False] * len(stale) + [True] * len(kept)


@pytest.mark.parametrize("version", [float("inf"), 1.0, True, "1"])
def test_a_version_that_is_not_an_integer_is_a_corrupt_entry(
    tmp_path: Path, version: object
) -> None:
    # json.loads reads Infinity as a float; int() of it overflowed, uncaught.
    directory = tmp_path / "ks"
    _old_keystore(directory, ("kex",))
    path = _meta_path(directory, "kex")
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "version": version}))
    with pytest.raises(PermanentBackendError, match=r"corrupt keystore entry .*1\.json"):
        _upgrade(directory)


def test_a_damaged_entry_says_how_to_get_the_keystore_back(tmp_path: Path) -> None:
    # The whole keystore is refused (setpay keys delete cannot open it): the remedy is a
    # backup or the operator's hands, and the refusal says which files.
    directory = tmp_path / "ks"
    _keystore(directory, GW_KEX, GW_KEX)
    _edit(_meta_path(directory, "gw-kex", 2), usage="signature", kem=None)
    remedy = (
        r"the keystore does not open until that version's files \(2\.json, 2\.pub\.pem, "
        r"2\.key\.pem, 2\.cert\.der\) are restored from a backup or removed by hand"
    )
    with pytest.raises(PermanentBackendError, match=_altered("gw-kex", 2) + ".*" + remedy):
        SoftwareBackend.open(directory, PASSPHRASE)
    for suffix in ("json", "pub.pem", "key.pem"):
        (directory / "keys" / "gw-kex" / f"2.{suffix}").unlink()
    assert [key.version for key in SoftwareBackend.open(directory, PASSPHRASE).list_keys()] == [1]


def test_a_dry_run_shows_every_version_and_writes_nothing(tmp_path: Path) -> None:
    # Every other command refuses an old keystore: the dry run is where it is checked.
    directory = tmp_path / "ks"
    before = _old_keystore(directory)
    (directory / ".lock").unlink()
    stale = directory / "keys" / "a" / ".1.json.4242.deadbeef.tmp"
    stale.write_text("left behind")
    files = _files(directory)
    shown: list[Upgrade] = []
    plan = Keystore.upgrade(directory, PASSPHRASE, shown.append, dry_run=True)
    assert _files(directory) == files  # no MAC, no header, the temp file kept
    assert not (directory / ".lock").exists()  # not even the lock: a read-only copy too
    assert shown == [plan]
    assert (plan.keys, plan.needed, plan.written, plan.stale_temp_files) == (
        tuple(before),
        True,
        False,
        1,
    )
    with pytest.raises(PermanentBackendError, match=OLD_KEYSTORE):
        SoftwareBackend.open(directory, PASSPHRASE)
    assert _upgrade(directory)[0].written
    assert SoftwareBackend.open(directory, PASSPHRASE).list_keys() == before


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_upgrade_of_a_mistyped_path_creates_nothing(tmp_path: Path, dry_run: bool) -> None:
    typo = tmp_path / "keystroe"
    with pytest.raises(PermanentBackendError, match=rf"{typo} is not a setpay keystore"):
        Keystore.upgrade(typo, PASSPHRASE, lambda plan: None, dry_run=dry_run)
    assert list(tmp_path.iterdir()) == []


def _certificate(public_key: PublicKey, usage: x509.KeyUsage | None) -> bytes:
    """A certificate of ``public_key`` with the keyUsage setpay's CAs give (``usage``)."""
    issuer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keystore test")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(public_key).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
    )  # fmt: skip
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


#: Keys as setpay certifies them, and the keyUsage setcore gives each one's certificate.
CERTIFIED: dict[Key, x509.KeyUsage] = {
    ("ca", KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256): key_usage(ca=True),
    SIG: key_usage(signature=True),
    KEX: key_usage(agree=True),
    ("rsa-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048): key_usage(encipher=True),
}


def _certified_old_keystore(directory: Path) -> list[KeyHandle]:
    """An old keystore whose keys carry their certificates, and a token key without."""
    token: Key = ("token", KeyUsage.TOKEN_SEALING, KeyAlgorithm.EC_P256)
    before = _keystore(directory, *CERTIFIED, token, certified=CERTIFIED)
    make_legacy(directory, PASSPHRASE)
    return before


def test_versions_are_checked_against_their_certificates(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    before = _certified_old_keystore(directory)
    done, shown = _upgrade(directory)
    assert done.keys == tuple(before)
    assert [key.label for key in shown[0].uncertified] == ["token"]
    assert SoftwareBackend.open(directory, PASSPHRASE).list_keys() == before


@pytest.mark.parametrize(
    ("label", "changes", "says"),
    [
        # The review's demo: a signing key made a CA's, every MAC stripped, so no warning.
        ("sig", {"usage": "ca-signing"}, "the metadata says ca-signing, its certificate's "
         "keyUsage is a signature key's"),
        ("kex", {"usage": "signature", "kem": None}, "the metadata says signature, its "
         "certificate's keyUsage is a key-exchange key's"),
        ("ca", {"usage": "signature"}, "the metadata says signature, its certificate's "
         "keyUsage is a ca-signing key's"),
        ("rsa-kex", {"usage": "token-sealing"}, "the metadata says token-sealing, its "
         "certificate's keyUsage is a key-exchange key's"),
    ],
)  # fmt: skip
def test_metadata_that_disagrees_with_its_certificate_is_not_upgraded(
    tmp_path: Path, label: str, changes: dict[str, Any], says: str
) -> None:
    directory = tmp_path / "ks"
    _certified_old_keystore(directory)
    path = _meta_path(directory, label)
    path.write_text(legacy_meta({**json.loads(path.read_text()), **changes}))
    files = _files(directory)
    for dry_run in (True, False):
        shown: list[Upgrade] = []
        with pytest.raises(PermanentBackendError) as refused:
            Keystore.upgrade(directory, PASSPHRASE, shown.append, dry_run=dry_run)
        assert str(refused.value).startswith(
            f"the key metadata disagrees with the certificate beside it: key {label!r} v1: "
            f"{says}. Nothing written"
        )
        assert (shown, _files(directory)) == ([], files)


@pytest.mark.parametrize(
    ("certificate", "says"),
    [
        pytest.param(lambda key: _certificate(_another_key(), key_usage(signature=True)),
                     "its certificate is of another public key than 1.pub.pem's", id="another"),
        pytest.param(certificate_for, "its certificate has no keyUsage", id="no-key-usage"),
        pytest.param(lambda key: b"not a certificate",
                     "its certificate (1.cert.der) is not DER X.509", id="not-der"),
        pytest.param(lambda key: _certificate(key, key_usage()), "the metadata says signature, "
                     "its certificate's keyUsage is none of setpay's", id="no-usage-bit"),
    ],
)  # fmt: skip
def test_a_certificate_that_cannot_vouch_for_its_key_refuses_the_upgrade(
    tmp_path: Path, certificate: Callable[[PublicKey], bytes], says: str
) -> None:
    directory = tmp_path / "ks"
    _certified_old_keystore(directory)
    cert_path = directory / "keys" / "sig" / "1.cert.der"
    public_key = serialization.load_pem_public_key(
        (directory / "keys" / "sig" / "1.pub.pem").read_bytes()
    )
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    cert_path.write_bytes(certificate(public_key))
    files = _files(directory)
    with pytest.raises(PermanentBackendError, match=r"key 'sig' v1: " + re.escape(says)):
        _upgrade(directory)
    assert _files(directory) == files


def _another_key() -> PublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def test_the_temp_file_sweep_never_follows_a_label_link_out_of_the_keystore(
    tmp_path: Path,
) -> None:
    """A label directory that is a link to elsewhere is not the keystore's (its own walk
    skips it too): a file there named like the keystore's temp files stays."""
    root = tmp_path / "ks"
    (root / "keys").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = elsewhere / ".1.json.123.0badc0de.tmp"
    outside.write_text("not the keystore's")
    (root / "keys" / "other").symlink_to(elsewhere, target_is_directory=True)
    inside = root / ".keystore.json.42.deadbeef.tmp"
    inside.write_text("a killed write")
    assert stale_temp_files(root) == [inside]
