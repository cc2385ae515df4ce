"""``read_initiation`` takes no SET Initiation whose JSON names a member twice: JSON leaves
open which value counts (Python's reader keeps the last, others the first), so the file
could show one amount, description or order and have the wallet pay another."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.wallet import read_initiation
from clients.errors import ClientError

ORDER = '"lid_m": "0a0b", "description": "a book", "currency": 978, "amount": 100'


@pytest.mark.parametrize(
    "twice",
    [
        '"amount": 100000',
        '"currency": 840',
        '"description": "ten books"',
        '"lid_m": "0c0d"',
        '"exp10": 2, "exp10": 0',
        '"brand": "setpay", "brand": "other"',
    ],
    ids=["amount", "currency", "description", "lid_m", "exp10", "brand"],
)
def test_an_initiation_naming_a_member_twice_is_refused(tmp_path: Path, twice: str) -> None:
    path = tmp_path / "initiation.json"
    path.write_text("{" + ORDER + ", " + twice + "}")
    with pytest.raises(ClientError) as caught:
        read_initiation(path)
    assert str(caught.value) == (
        f"{path} names a member more than once: not a SET Initiation to pay"
    )


def test_a_nested_object_naming_a_member_twice_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "initiation.json"
    path.write_text("{" + ORDER + ', "merchant": {"at": "a", "at": "b"}}')
    with pytest.raises(ClientError, match="names a member more than once"):
        read_initiation(path)


def test_an_initiation_naming_each_member_once_is_read(tmp_path: Path) -> None:
    path = tmp_path / "initiation.json"
    path.write_text("{" + ORDER + ', "brand": "setpay", "merchant": {"at": "[::]:1"}}')
    initiation = read_initiation(path)
    assert (initiation.lid_m, initiation.description) == (bytes.fromhex("0a0b"), b"a book")
    assert (initiation.currency, initiation.amount, initiation.exp10) == (978, 100, 2)
    assert initiation.brand_id == "setpay"
