"""Which files in a keystore label directory are key versions: ``N.json`` as written, no other.

A version's JSON file is named ``f"{version}.json"``: ASCII digits, from 1, no leading
zero. ``str.isdigit`` took more: a superscript two (``int`` then raised a bare
``ValueError`` at open) and other scripts' digits (an Arabic-Indic one was read as
version 1). Any other name is a stray file, as a note or a link under ``keys/`` is: not a
key, left where it is, and no version number is taken from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.keystore_metadata import version_of_file
from hsm.software import SoftwareBackend

from .keycheck import verify

PASSPHRASE = "keystore passphrase for tests"

STRAY_NAMES = [
    "\u00b2.json",  # superscript two: isdigit, and int() raised
    "\u0661.json",  # Arabic-Indic one: isdigit, and int() read it as 1
    "\u0967.json",  # Devanagari one
    "\uff11.json",  # fullwidth one
    "01.json",  # never written: version 1's file is 1.json
    "0.json",  # versions start at 1
    "1.json.bak",
    "1.JSON",
    " 1.json",
    "-1.json",
    "+1.json",
    "1_0.json",
    ".json",
]


@pytest.mark.parametrize("name", STRAY_NAMES)
def test_only_a_name_as_written_is_a_version_file(name: str) -> None:
    assert version_of_file(name) is None


@pytest.mark.parametrize(("name", "version"), [("1.json", 1), ("9.json", 9), ("10.json", 10)])
def test_a_name_as_written_gives_its_version(name: str, version: int) -> None:
    assert version_of_file(name) == version


@pytest.mark.parametrize("name", STRAY_NAMES)
def test_a_stray_file_in_a_label_directory_is_no_version(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.close()
    keys_dir = directory / "keys"
    # Beside a version, and alone in a directory named like a label.
    strays = [keys_dir / "k" / name, keys_dir / "other" / name]
    (keys_dir / "other").mkdir(mode=0o700)
    for stray in strays:
        stray.write_text("{}")
    reopened = SoftwareBackend.open(directory, PASSPHRASE)
    assert [(k.label, k.version) for k in reopened.list_keys()] == [("k", 1)]
    # No version number is taken from it: the next versions are 2 and 1.
    assert reopened.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version == 2
    made = reopened.generate("other", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert made.version == 1
    verify(made.public_key, reopened.sign(reopened.get("other", 1), b"data"), b"data")
    # Left where it is, as it was.
    assert [stray.read_text() for stray in strays] == ["{}", "{}"]
    reopened.delete("other")
    assert os.listdir(keys_dir / "other") == [name]
