"""A certificate not valid yet by the merchant's clock counts as live when ``register``
decides whether it may register again, as the Merchant CA counts it (notAfter and
revocation alone); and ``register`` judges each certificate once, reading its chain file
once. Against the real bank and its CA.

Before, a certificate whose notBefore was ahead (the merchant's clock behind the CA's)
failed the judgement as EXPIRED_CERTIFICATE and was not counted: ``register`` made new
keys and sent its CertReq, which the CA refused with a bare REJECTED_BY_AGENT, since the
ID still held that unrevoked certificate. And the newest signature certificate was judged
twice, the chain file read twice, by one ``register``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clients.identity import read_certificates, read_root
from clients.merchant import registration_again
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, SIGNATURE_LABEL
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from setcore.pki import issuance
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import read_merchant_data
from setcore.pki.issuance import IssuingCA, issue_merchant
from setcore.pki.presented import Presented, verify_presented
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.merchant.test_register_again import (
    _account_file,
    _certificate,
    _certified_at,
    _registered,
    _registers_again_as_advised,
    _revoked_by_the_operator,
    _serves_and_authorizes,
    _versions,
)
from tests.clients.merchant.test_register_again_kex import (
    _ca_rows,
    _refused_before_anything_is_made,
    _revoke,
    _serve_advises_revoking_first,
)

#: How far ahead of the merchant's clock a certificate begins: far past the skew the CA
#: backdates a notBefore by (``setcore.pki.issuance.CLOCK_SKEW``).
AHEAD = timedelta(days=1)


def _not_valid_yet(bank: RunningBank, directory: Path, label: str = KEY_EXCHANGE_LABEL) -> None:
    """The key ``label`` certified by the brand's Merchant CA from a day ahead, as a CA
    whose clock runs that far ahead of the merchant's issues it."""
    _certified_at(bank, directory, datetime.now(UTC) + AHEAD, label)


@pytest.mark.parametrize(("why", "name"), [("been revoked", "m-early-sig-revoked"),
                                           ("ended", "m-early-sig-ended")])  # fmt: skip
def test_a_kex_certificate_not_valid_yet_is_live_and_register_refuses_naming_it(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str], why: str, name: str
) -> None:
    """The signature certificate revoked (or ended), the key-exchange one not valid yet:
    ``register`` refuses before making any key version or ca.db row, naming that one and
    its revocation; ``serve`` advises the same."""
    directory = _registered(bank, tmp_path / name, capsys)
    if why == "ended":
        _certified_at(bank, directory, datetime.now(UTC) - timedelta(days=3))
    else:
        _revoke(bank, _certificate(directory, SIGNATURE_LABEL))
    _not_valid_yet(bank, directory)
    assert load_certificate(
        _certificate(directory, KEY_EXCHANGE_LABEL)
    ).not_valid_before_utc > datetime.now(UTC)
    _refused_before_anything_is_made(bank, directory, capsys, why)
    _serve_advises_revoking_first(directory)


def test_a_kex_certificate_not_valid_yet_but_revoked_is_not_live(
    bank: RunningBank,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only "not valid yet" changes meaning: one the CA's revocation data lists stays not
    live (revocation is judged whatever the instant), so register goes ahead and the CA
    takes it. The certificate not valid yet carries the revoked one's serial, as the CA's
    CRL names a certificate by issuer and serial."""
    directory = _registered(bank, tmp_path / "m-early-kex-revoked", capsys)
    serial = load_certificate(_certificate(directory, KEY_EXCHANGE_LABEL)).serial_number
    _revoked_by_the_operator(bank, directory)
    with monkeypatch.context() as reissuing:
        reissuing.setattr(issuance, "random_serial", lambda: serial)
        _not_valid_yet(bank, directory)
    early = load_certificate(_certificate(directory, KEY_EXCHANGE_LABEL))
    assert (early.serial_number, early.not_valid_before_utc > datetime.now(UTC)) == (serial, True)
    _registers_again_as_advised(bank, directory, capsys)
    _serves_and_authorizes(bank, directory)


def _judged(directory: Path) -> list[tuple[str, int]]:
    """(label, version) of each certificate ``still_live`` counts for the merchant in
    ``directory``, judged with a trust store pinning its root (no revocation data)."""
    config = load_merchant_config(directory)
    chain = read_certificates(config.chain)
    trust = TrustStore(read_root(config.root))
    trust.add_certificates(chain)
    backend = open_backend(config.keys_uri())
    try:
        live = registration_again.still_live(trust, backend, chain)
    finally:
        backend.close()
    return [(key.label, key.version) for key, _ in live]


def test_a_certificate_not_valid_yet_of_another_usage_is_not_live(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Judged as of its notBefore, a certificate not valid yet meets every other check a
    peer makes: a key-exchange key certified for signature is refused there as now (no
    revocation would change that), and is not counted; one of its own usage is."""
    directory = _registered(bank, tmp_path / "m-early-usage", capsys)
    _not_valid_yet(bank, directory)
    assert _judged(directory) == [(SIGNATURE_LABEL, 1), (KEY_EXCHANGE_LABEL, 1)]
    config = load_merchant_config(directory)
    backend = open_backend(config.keys_uri())
    try:
        key = backend.get(KEY_EXCHANGE_LABEL)
        issued = load_certificate(_certificate(directory, KEY_EXCHANGE_LABEL))
        data = read_merchant_data(issued)
        assert data is not None
        mca = bank.pki.mca
        signing = issue_merchant(
            IssuingCA(bank.pki.backend, mca.signature_key, mca.signature_cert,
                      (bank.pki.root_der,)),
            key.public_key, CertificateUsage.SIGNATURE, data,
            at=datetime.now(UTC) + AHEAD, lifetime=timedelta(days=2),
        )  # fmt: skip
        backend.store_certificate(key, signing)
    finally:
        backend.close()
    assert _judged(directory) == [(SIGNATURE_LABEL, 1)]


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
