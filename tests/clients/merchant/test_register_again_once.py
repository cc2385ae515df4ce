"""One ``register`` judges each of the merchant's certificates once and reads its chain
file once, against the real bank and its CA. Before, the newest signature certificate
was judged twice and the chain file read twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from clients.identity import read_certificates
from clients.merchant import registration_again
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, SIGNATURE_LABEL
from setcore.encoding import thumbprint
from setcore.pki.presented import Presented, verify_presented
from setcore.pki.truststore import TrustStore
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.merchant.test_register_again import (
    _account_file,
    _certificate,
    _registered,
    _versions,
)
from tests.clients.merchant.test_register_again_kex import _ca_rows, _revoke


def test_register_judges_each_certificate_once_and_reads_the_chain_once(
    bank: RunningBank,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signature certificate revoked, the key-exchange one live: one ``register``
    judges each once (before, the signature one twice) and reads the chain file once
    (before, twice), refusing as before."""
    directory = _registered(bank, tmp_path / "m-early-once", capsys)
    _revoke(bank, _certificate(directory, SIGNATURE_LABEL))
    judged: Counter[str] = Counter()
    read: list[Path] = []

    def judging(trust: TrustStore, presented: Presented, at: datetime | None = None) -> None:
        judged[thumbprint(presented.der).hex()[:8]] += 1
        verify_presented(trust, presented, at)

    def reading(path: Path) -> tuple[bytes, ...]:
        read.append(path)
        return read_certificates(path)

    monkeypatch.setattr(registration_again, "verify_presented", judging)
    monkeypatch.setattr(registration_again, "read_certificates", reading)
    versions, rows = _versions(directory), _ca_rows(bank)
    account = _account_file(bank, directory)
    status, _, err = run_cli(
        ["merchant", "--dir", str(directory), "register", "--account-file", str(account)], capsys
    )
    assert (status, _versions(directory), _ca_rows(bank)) == (1, versions, rows), err
    assert f"{SIGNATURE_LABEL} v1 has been revoked, but " in err
    each = Counter(
        thumbprint(_certificate(directory, label)).hex()[:8]
        for label in (SIGNATURE_LABEL, KEY_EXCHANGE_LABEL)
    )
    assert (judged, read) == (each, [load_merchant_config(directory).chain])
