"""The software keystore's key metadata is authenticated: edited on disk, it is refused.

Whoever can write the keystore directory, without the passphrase, must not be able to
change what a key may do (a key-exchange key made to sign, a KEM downgraded), hand one
key's metadata to another, or slip in metadata in the old, unauthenticated format.
Keystores written before still open, and are upgraded when they do.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from hsm import keystore as keystore_module
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import PermanentBackendError
from hsm.software import SoftwareBackend

from .keycheck import encapsulate, verify
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
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.RSA_2048)
    backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    backend.close()
    _edit(_meta_path(directory, "gw-kex"), **{field: value})
    with pytest.raises(PermanentBackendError, match=_altered("gw-kex") + r" \(its MAC"):
        SoftwareBackend.open(directory, PASSPHRASE)


def test_metadata_moved_onto_another_key_is_refused(tmp_path: Path) -> None:
    # The signing key's N.json and N.pub.pem put beside the key-exchange key's key file,
    # or just its public key file put beside the key-exchange key's metadata.
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.close()
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
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.close()
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
    # The format-3 check is of another string: edited back, the passphrase check fails.
    with pytest.raises(PermanentBackendError, match="wrong passphrase"):
        SoftwareBackend.open(directory, PASSPHRASE)
    assert _meta_path(directory, "gw-kex").read_bytes() == meta


def test_the_refusal_holds_nothing_of_the_key_or_the_passphrase(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.close()
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
def test_an_old_keystore_opens_works_and_is_upgraded_at_open(
    tmp_path: Path, header_format: int
) -> None:
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    before = backend.list_keys()
    backend.close()
    make_legacy(directory, PASSPHRASE, header_format)
    key_files = {path: path.read_bytes() for path in directory.glob("keys/*/*.pem")}

    reopened = SoftwareBackend.open(directory, PASSPHRASE)
    assert reopened.list_keys() == before
    signing, exchange = reopened.get("gw-sig"), reopened.get("gw-kex")
    verify(signing.public_key, reopened.sign(signing, b"data"), b"data")
    assert exchange.kem is not None
    ciphertext, expected = encapsulate(exchange)
    assert reopened.decapsulate(exchange, exchange.kem, ciphertext) == expected

    # Upgraded at that open: every N.json has its MAC, then the header says so. The key
    # files are as they were: the passphrase-derived key, their password, is the same.
    header = json.loads((directory / "keystore.json").read_text())
    assert header["format"] == 3
    for label in ("gw-sig", "gw-kex"):
        meta = json.loads(_meta_path(directory, label).read_text())
        assert meta["format"] == 2
        assert len(base64.b64decode(meta["mac"], validate=True)) == 32
    assert {path: path.read_bytes() for path in key_files} == key_files
    assert not list(directory.rglob("*.tmp"))
    # And from now on, an edit is refused.
    _edit(_meta_path(directory, "gw-kex"), usage="signature", kem=None)
    with pytest.raises(PermanentBackendError, match=_altered("gw-kex")):
        SoftwareBackend.open(directory, PASSPHRASE)


def test_an_upgrade_cut_short_is_taken_up_at_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    for label in ("a", "b", "c"):
        backend.generate(label, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    before = backend.list_keys()
    backend.close()
    make_legacy(directory, PASSPHRASE)
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
        SoftwareBackend.open(directory, PASSPHRASE)
    monkeypatch.undo()
    # The header is written last: still an old keystore, with one entry upgraded.
    assert json.loads((directory / "keystore.json").read_text())["format"] == 2
    formats = sorted(json.loads(p.read_text())["format"] for p in directory.glob("keys/*/1.json"))
    assert formats == [1, 1, 2]

    reopened = SoftwareBackend.open(directory, PASSPHRASE)
    assert reopened.list_keys() == before
    assert json.loads((directory / "keystore.json").read_text())["format"] == 3
    assert {json.loads(p.read_text())["format"] for p in directory.glob("keys/*/1.json")} == {2}
    key = reopened.get("b")
    verify(key.public_key, reopened.sign(key, b"data"), b"data")


def test_an_old_keystore_opened_by_several_at_once_opens_for_each(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.close()
    make_legacy(directory, PASSPHRASE)
    opened: list[SoftwareBackend] = []
    failed: list[BaseException] = []

    def open_it() -> None:
        try:
            opened.append(SoftwareBackend.open(directory, PASSPHRASE))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    for each in opened:
        key = each.get("k")
        verify(key.public_key, each.sign(key, b"data"), b"data")
    assert json.loads((directory / "keystore.json").read_text())["format"] == 3
