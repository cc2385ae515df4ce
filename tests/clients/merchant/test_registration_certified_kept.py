"""``discard_keys`` never destroys a certified version: it may sign already, and an answer
sealed to it may still come. Every caller hands it versions it believes uncertified, so
the check is the last line before the backend's delete, and is tested as such.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys.
"""

from __future__ import annotations

import logging
from pathlib import Path

from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, SIGNATURE_LABEL
from clients.merchant.registration_pending import discard_keys
from hsm.base import KeyUsage
from hsm.uri import open_backend
from setcore.profiles import EC
from tests.clients.bank_support import RunningBank, configure_merchant, register_merchant

log = logging.getLogger("setpay.merchant")


def test_a_certified_version_is_kept_an_uncertified_one_goes(
    bank: RunningBank, tmp_path: Path
) -> None:
    directory = tmp_path / "m-certified-kept"
    configure_merchant(bank, directory, directory.name)
    register_merchant(directory)
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        certified = [backend.get(SIGNATURE_LABEL, 1), backend.get(KEY_EXCHANGE_LABEL, 1)]
        assert all(backend.certificate(key) is not None for key in certified)
        made = backend.generate(SIGNATURE_LABEL, KeyUsage.SIGNATURE, EC.signature_key)
        discard_keys(backend, [*certified, made], log)
        left = sorted((key.label, key.version) for key in backend.list_keys())
    finally:
        backend.close()
    assert left == [(KEY_EXCHANGE_LABEL, 1), (SIGNATURE_LABEL, 1)]
