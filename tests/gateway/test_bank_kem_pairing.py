"""A bank starts only if each key-exchange key accepts the key transport its certificate
names: the gateway's (the newest and each older one a renewal kept) and the CAs'.

The review's bypass: an old keystore's ``gateway-kex`` metadata edited to SHA-1 OAEP, the
certificate beside it replaced by one the editor made (or removed), and the keystore
upgraded: ``hsm`` cannot verify that certificate, so the upgrade passes. The bank pairs
the key with ``certs/gateway-kex.der``, the CA's, by public key alone; envelopes were then
opened by the key's SHA-1, and honest ones refused. Now the bank does not start.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cli.main import main as setpay
from gateway.bank_pki import BankIncomplete, load_bank_pki
from gateway.config import BankConfig, load
from gateway.gateway_renewal import renew_gateway_keys
from gateway.process import start_bank
from gateway.provisioning import init_bank
from hsm.base import KemAlgorithm
from hsm.pinsource import PinSource
from setcore.credentials import RESTORE_REMEDY
from tests.setcore.kem_tampering import Certificate, authenticated_kem_edit

from .advised_commands import advised, advised_argv, spaced_root

#: Restoring the version: every command that loads the bank's keys (``setpay ca
#: renew-gateway`` too) is refused as the bank is, and the CAs' key-exchange keys have no
#: renewal, so the refusal advises neither renewing nor a backup the keystore refuses.
RESTORE = RESTORE_REMEDY  # its words are pinned in tests/setcore/test_credentials_kem.py
REMEDY = ": the key's metadata (or its token) changed since it was certified. Refused: " + RESTORE


def _bank(parent: Path, profile: str) -> BankConfig:
    """A bank as ``setpay init`` makes it, in a directory a shell would split."""
    directory = spaced_root(parent) / "bank"
    init_bank(directory, profile=profile, env={})
    return load(directory / "setpay.toml", env={})


def _edit(config: BankConfig, label: str, version: int, kem: KemAlgorithm | None,
          certificate: Certificate = "kept") -> None:  # fmt: skip
    passphrase = PinSource("file", str(config.base_dir / "keys.pass")).read()
    authenticated_kem_edit(config.base_dir / "keys", passphrase, label, version, kem, certificate)


def _refused(config: BankConfig) -> str:
    """The bank's refusal to load, and to start (nothing served, nothing left open)."""
    with pytest.raises(BankIncomplete) as refused:
        load_bank_pki(config)
    with pytest.raises(BankIncomplete) as again:
        start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    assert str(again.value) == str(refused.value)
    return str(refused.value)


@pytest.mark.parametrize("profile", ["ec", "rsa"])
def test_a_genuine_bank_loads(tmp_path: Path, profile: str) -> None:
    pki = load_bank_pki(_bank(tmp_path, profile))
    try:
        kex = pki.gateway.require_key_exchange()[0]
        assert kex.kem is not None
    finally:
        pki.close()


@pytest.mark.parametrize("certificate", ["forged", "deleted"])
def test_the_gateway_key_made_to_open_sha1_oaep_does_not_start_the_bank(
    tmp_path: Path, certificate: Certificate
) -> None:
    config = _bank(tmp_path, "rsa")
    _edit(config, "gateway-kex", 1, KemAlgorithm.RSA_OAEP_SHA1, certificate)
    assert _refused(config) == (
        "gateway-kex.der: key 'gateway-kex' v1 accepts rsa-oaep-sha1, but the key-exchange "
        f"certificate presented with it names kemAlgorithm rsa-oaep-sha256{REMEDY}"
    )


def test_a_ca_key_exchange_key_whose_kem_was_dropped_does_not_start_the_bank(
    tmp_path: Path,
) -> None:
    config = _bank(tmp_path, "ec")
    _edit(config, "mca-kex", 1, None)
    assert _refused(config) == (
        "mca-kex.der: key 'mca-kex' v1 accepts no key transport, but the key-exchange "
        f"certificate presented with it names kemAlgorithm p256-hkdf-sha256{REMEDY}"
    )


def test_an_older_gateway_key_whose_kem_its_certificate_does_not_name_does_not_start_the_bank(
    tmp_path: Path,
) -> None:
    config = _bank(tmp_path, "ec")
    renew_gateway_keys(config)
    pki = load_bank_pki(config)  # renewed as made: v2 the newest, v1 kept for envelopes
    try:
        assert [key.version for key, _ in pki.older_key_exchange] == [1]
    finally:
        pki.close()
    _edit(config, "gateway-kex", 1, KemAlgorithm.RSA_OAEP_SHA256)
    command = (
        f"setpay keys delete --config {shlex.quote(str(config.base_dir / 'setpay.toml'))} "
        "--label gateway-kex --version 1"
    )
    assert _refused(config) == (
        "gateway-kex.v1.der: key 'gateway-kex' v1 accepts rsa-oaep-sha256, but the "
        "key-exchange certificate presented with it names kemAlgorithm p256-hkdf-sha256: "
        "the key's metadata (or its token) changed since it was certified. Refused: this is "
        "an older version, which opens only what was sealed to it before a renewal: delete "
        f"it with `{command}` and start again, or {RESTORE}"
    )


def test_the_command_the_refusal_of_an_older_gateway_key_names_lets_the_bank_start(
    tmp_path: Path,
) -> None:
    # Before, it advised renewing, which is refused as the bank is, or a backup.
    config = _bank(tmp_path, "ec")
    renew_gateway_keys(config)
    _edit(config, "gateway-kex", 1, KemAlgorithm.RSA_OAEP_SHA256)
    refusal = _refused(config)
    args = advised(refusal, config.base_dir / "setpay.toml")  # the real parser, this bank
    assert (args.command, args.keys_command, args.label, args.version) == (
        "keys", "delete", "gateway-kex", 1,
    )  # fmt: skip
    assert setpay(advised_argv(refusal)[1:]) == 0  # run as pasted
    pki = load_bank_pki(config)
    try:
        assert pki.older_key_exchange == ()
        assert pki.gateway.require_key_exchange()[0].version == 2
    finally:
        pki.close()
