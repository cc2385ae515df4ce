"""An older key-exchange certificate of the gateway whose key, or kept file, is gone.

After a renewal, the bank opens what is sealed to the key-exchange certificate it
replaced with the key kept for it (``certs/gateway-kex.vN.der``). Once that key is
deleted (``setpay keys delete --config``, the certificate still valid) or the kept file
removed, the bank starts without it, and no process of the bank will ever open such an
envelope. It was answered UNAVAILABLE, as if renewed since the process started
(``gateway.opening_keys``): the merchant sent it again and again until the certificate
ended, a year, and the order never ended. It is refused as sealed to another
(WRONG_RECIPIENT), as one sealed to a certificate the bank never issued is; an envelope
sealed to a certificate recorded after the one a process hands out is still answered
UNAVAILABLE (``test_gateway_renewal_hosts``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bank_pki import GATEWAY_KEX_LABEL, bank_keys_uri, older_kex_name
from gateway.gateway_renewal import renew_gateway_keys
from hsm.uri import open_backend

from .actors import auth_request, purchase, register_cardholder, register_merchant
from .renewal_support import key_versions
from .test_gateway_renewal import Served
from .test_gateway_renewal_hosts import answered


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    yield bank
    bank.stop()


def _delete_key(served: Served) -> None:
    backend = open_backend(bank_keys_uri(served.config()))
    try:
        backend.delete(GATEWAY_KEX_LABEL, 1)
    finally:
        backend.close()
    assert (GATEWAY_KEX_LABEL, 1) not in key_versions(served.config())


def _remove_kept_file(served: Served) -> None:
    (served.directory / "certs" / older_kex_name(1)).unlink()


@pytest.mark.parametrize("lose", [_delete_key, _remove_kept_file], ids=["key", "kept-file"])
def test_an_envelope_to_an_older_certificate_no_process_holds_is_refused(
    served: Served, lose: object
) -> None:
    merchant = register_merchant(served.world, "M-lost-1")
    cardholder = register_cardholder(served.world)
    sealed_to_v1 = auth_request(merchant, purchase(merchant, cardholder, 600))
    served.stop()
    renew_gateway_keys(served.config())
    world = served.start()
    # While the key and its kept file are there, it opens as before.
    assert answered(
        world, merchant, *auth_request(merchant, purchase(merchant, cardholder, 500))
    ) == ("AUTH_CODE_APPROVED")
    served.stop()
    assert callable(lose)
    lose(served)
    world = served.start()
    # The same bytes, sent again as a merchant does: refused each time, never UNAVAILABLE.
    for _ in range(2):
        assert answered(world, merchant, *sealed_to_v1) == "ERROR_CODE_WRONG_RECIPIENT"
