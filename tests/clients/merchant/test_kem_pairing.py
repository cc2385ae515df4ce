"""A merchant opens only if each certified key-exchange key accepts the key transport its
certificate names: the newest, and each older one kept after a renewal, which still opens
the gateway's answers to requests made before it (``current_credentials``).

Against the real bank: an RSA merchant, registered and renewed, then one version's KEM
edited to SHA-1 OAEP in its keystore (as an old keystore, upgraded by a release that did
not compare the KEM) while its certificate still names SHA-256.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clients.identity import certified_versions
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL
from clients.merchant.runtime import Merchant
from hsm.base import KemAlgorithm
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
        versions = [key for key, _ in certified_versions(backend, KEY_EXCHANGE_LABEL)]
        assert [(key.version, key.kem) for key in versions] == [
            (2, KemAlgorithm.RSA_OAEP_SHA256),
            (1, KemAlgorithm.RSA_OAEP_SHA256),
        ]
    finally:
        merchant.close()


@pytest.mark.parametrize("version", [1, 2], ids=["older", "newest"])
def test_a_key_exchange_key_made_to_open_sha1_oaep_does_not_open_the_merchant(
    renewed: Path, tmp_path: Path, version: int
) -> None:
    directory = _copy(renewed, tmp_path)
    authenticated_kem_edit(
        directory / "keys", KEYSTORE_PASSPHRASE, KEY_EXCHANGE_LABEL, version,
        KemAlgorithm.RSA_OAEP_SHA1,
    )  # fmt: skip
    with pytest.raises(ConfigurationError) as refused:
        Merchant.open(load_merchant_config(directory))
    assert str(refused.value) == (
        f"key 'merchant-kex' v{version} accepts rsa-oaep-sha1, but the key-exchange "
        "certificate presented with it names kemAlgorithm rsa-oaep-sha256: the key's "
        "metadata (or its token) changed since it was certified. Refused: restore the key "
        "version from a backup, or renew the key"
    )
