"""A merchant opens only if each certified key-exchange key accepts the key transport its
certificate names: the newest, and each older one kept after a renewal, which still opens
the gateway's answers to requests made before it (``current_credentials``).

Against the real bank: an RSA merchant, registered and renewed, then one version's KEM
edited to SHA-1 OAEP in its keystore (as an old keystore, upgraded by a release that did
not compare the KEM) while its certificate still names SHA-256.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from cli.main import build_parser
from cli.main import main as setpay
from clients.errors import ConfigError
from clients.identity import certified_versions
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL
from clients.merchant.runtime import Merchant
from hsm.base import KemAlgorithm, KeyBackend
from hsm.uri import open_backend as real_open
from setcore.credentials import RESTORE_REMEDY
from setcore.encoding import thumbprint
from setcore.errors import ConfigurationError
from setcore.profiles import RSA
from tests.clients.bank_support import RunningBank, configure_merchant, merchant_registrar
from tests.clients.bank_support import register_merchant as register
from tests.clients.conftest import KEYSTORE_PASSPHRASE
from tests.setcore.kem_tampering import authenticated_kem_edit


@pytest.fixture(scope="module")
def renewed(bank: RunningBank, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RSA merchant, registered then renewed: merchant-kex v1 and v2, both certified."""
    directory = tmp_path_factory.mktemp("kem") / "M-KEM-RSA"
    configure_merchant(bank, directory, "M-KEM-RSA")
    register(directory, RSA)
    with merchant_registrar(directory) as registrar:
        assert registrar.renew(RSA).complete
    return directory


def _copy(renewed: Path, tmp_path: Path) -> Path:
    directory = tmp_path / renewed.name
    shutil.copytree(renewed, directory)
    return directory


def test_a_renewed_rsa_merchant_opens_with_both_key_exchange_keys(
    renewed: Path, tmp_path: Path
) -> None:
    merchant = Merchant.open(load_merchant_config(_copy(renewed, tmp_path)))
    try:
        backend = merchant.credentials.backend
        versions = certified_versions(backend, KEY_EXCHANGE_LABEL)
        assert [(key.version, key.kem) for key, _ in versions] == [
            (2, KemAlgorithm.RSA_OAEP_SHA256),
            (1, KemAlgorithm.RSA_OAEP_SHA256),
        ]
        for key, der in versions:  # each opens what is sealed to its own certificate
            opener, _ = merchant.credentials.key_exchange_for(thumbprint(der))
            assert opener.version == key.version
    finally:
        merchant.close()


#: What the refusal of the version in use advises: a renewal (``setpay merchant renew``)
#: loads the keys through the same check, and the keystore refuses a backup from before
#: its upgrade.
RESTORE = RESTORE_REMEDY  # its words are pinned in tests/setcore/test_credentials_kem.py
#: What the refusal of an older version advises first: deleting it.
DELETE_V1 = (
    "this is an older version, which opens only what was sealed to it before a renewal: "
    "delete it with `setpay keys delete --keys URI --label merchant-kex --version 1` (URI: "
    "the keys setting of the configuration; run it from that file's directory) and start "
    "again, or "
)


def _downgraded(renewed: Path, tmp_path: Path, version: int) -> Path:
    """A copy of the renewed merchant, ``version`` of its key-exchange key made to open
    SHA-1 OAEP while its certificate names SHA-256."""
    directory = _copy(renewed, tmp_path)
    authenticated_kem_edit(
        directory / "keys", KEYSTORE_PASSPHRASE, KEY_EXCHANGE_LABEL, version,
        KemAlgorithm.RSA_OAEP_SHA1,
    )  # fmt: skip
    return directory


@pytest.mark.parametrize(
    ("version", "remedy"), [(1, DELETE_V1 + RESTORE), (2, RESTORE)], ids=["older", "newest"]
)
def test_a_key_exchange_key_made_to_open_sha1_oaep_does_not_open_the_merchant(
    renewed: Path, tmp_path: Path, version: int, remedy: str
) -> None:
    directory = _downgraded(renewed, tmp_path, version)
    with pytest.raises(ConfigurationError) as refused:
        Merchant.open(load_merchant_config(directory))
    assert str(refused.value) == (
        f"key 'merchant-kex' v{version} accepts rsa-oaep-sha1, but the key-exchange "
        "certificate presented with it names kemAlgorithm rsa-oaep-sha256: the key's "
        f"metadata (or its token) changed since it was certified. Refused: {remedy}"
    )


def test_the_command_the_refusal_of_an_older_key_names_lets_the_merchant_open(
    renewed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, it advised renewing, which ``setpay merchant renew`` refuses as open does.
    directory = _downgraded(renewed, tmp_path, 1)
    config = load_merchant_config(directory)
    with pytest.raises(ConfigurationError) as refused:
        Merchant.open(config)
    argv = shlex.split(str(refused.value).split("`")[1])
    assert argv[0] == "setpay"
    args = build_parser().parse_args(argv[1:])  # the real parser: a command that exists
    assert (args.command, args.keys_command, args.label, args.version) == (
        "keys", "delete", KEY_EXCHANGE_LABEL, 1,
    )  # fmt: skip
    monkeypatch.chdir(directory)  # as the advice says: URI as merchant.toml writes it
    assert setpay([config.keys if word == "URI" else word for word in argv[1:]]) == 0
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        kept = [key.version for key, _ in certified_versions(merchant.backend, KEY_EXCHANGE_LABEL)]
        assert kept == [2]
    finally:
        merchant.close()


class ClosingBackend:
    """The backend ``Merchant.open`` opens, recording whether it was closed."""

    def __init__(self, backend: KeyBackend) -> None:
        self.backend = backend
        self.closed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    def close(self) -> None:
        self.closed = True
        self.backend.close()


@pytest.mark.parametrize("refusal", ["key-refused", "another-merchant-id"])
def test_a_merchant_that_does_not_open_closes_the_backend_it_opened(
    renewed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    opened: list[ClosingBackend] = []

    def open_backend(uri: str) -> KeyBackend:
        opened.append(ClosingBackend(real_open(uri)))
        return opened[-1]  # type: ignore[return-value]

    monkeypatch.setattr("clients.merchant.runtime.open_backend", open_backend)
    if refusal == "key-refused":
        config = load_merchant_config(_downgraded(renewed, tmp_path, 2))
        expected: type[Exception] = ConfigurationError
    else:
        config = replace(load_merchant_config(_copy(renewed, tmp_path)), merchant_id="M-OTHER")
        expected = ConfigError
    with pytest.raises(expected):
        Merchant.open(config)
    assert [backend.closed for backend in opened] == [True]
