"""What a bank loads at start of an older gateway key-exchange certificate that has ended
(``gateway.older_key_exchange``), and what it opens with that key.

It is kept for the answers to decisions left unanswered only
(``OpeningKeys.decided_key_exchange``, whenever the bytes were checked); an
envelope chosen as a fresh one is opened with the newest key, as before it was loaded.
One whose key cannot be used (gone, not the key its file certifies, accepting another
key transport) is skipped with one warning, and the bank starts: before it was loaded at
all, such a one stopped nothing, and a decision left unanswered is no reason to stop.
The served case (a restart, then the merchant's retry) is ``test_ended_kex_resend``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.bank_errors import BankIncomplete
from gateway.bank_pki import (
    GATEWAY_KEX_LABEL,
    BankPki,
    bank_keys_uri,
    load_bank_pki,
    older_kex_name,
)
from gateway.config import BankConfig
from gateway.gateway_renewal import renew_gateway_keys
from gateway.process import start_bank
from hsm.base import KemAlgorithm, KeyHandle
from hsm.pinsource import PinSource
from hsm.software import SoftwareBackend
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import END_ENTITY_LIFETIME
from tests.setcore.kem_tampering import authenticated_kem_edit

from .renewal_support import stopped_bank

# A bank made this long ago: its first gateway certificates ended a day ago.
MADE_AGO = END_ENTITY_LIFETIME + timedelta(days=1)
SKIPPED = (
    "ended older gateway key-exchange certificates not used, so a decision left unanswered"
    " that was sealed to one stays unanswered: "
)
KEPT = (
    "ended older gateway key-exchange certificates kept, opening only the answers to"
    " decisions left unanswered: "
)


@pytest.fixture
def config(tmp_path: Path) -> BankConfig:
    """A stopped bank made a year and a day ago and renewed now: v1 ended, v2 the newest."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - MADE_AGO)
    renew_gateway_keys(config)
    return config


@pytest.fixture
def pki(config: BankConfig) -> Iterator[BankPki]:
    loaded = load_bank_pki(config)
    yield loaded
    loaded.close()


def _kept_der(config: BankConfig, version: int) -> bytes:
    return (config.path(config.certs_dir) / older_kex_name(version)).read_bytes()


def _end_ms(der: bytes) -> int:
    return int(load_certificate(der).not_valid_after_utc.timestamp() * 1000)


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "setpay.bank" and r.levelno == level
    ]


def test_an_ended_certificate_s_key_is_loaded_apart(
    config: BankConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "setpay.bank"):
        pki = load_bank_pki(config)
    try:
        assert [line for line in _lines(caplog, logging.INFO) if line.startswith(KEPT)] == [
            KEPT + "v1"
        ]
        assert not [line for line in _lines(caplog, logging.WARNING) if SKIPPED in line]
        der = _kept_der(config, 1)
        assert [(key.version, cert) for key, cert in pki.ended_key_exchange] == [(1, der)]
        # Nothing that opens a fresh envelope.
        assert pki.older_key_exchange == () and pki.opening_keys().older == ()
        assert pki.gateway.require_key_exchange()[0].version == 2
    finally:
        pki.close()


def test_the_ended_key_opens_only_decided_bytes(pki: BankPki) -> None:
    [(key, der)] = pki.ended_key_exchange
    thumb, end = thumbprint(der), _end_ms(der)
    opening = pki.opening_keys()
    assert opening.decided_key_exchange(thumb) == (key, thumb)
    # Chosen as a fresh envelope is, now or as of a moment it stood: the newest key, which
    # the opener refuses as sealed to another (WRONG_RECIPIENT), as before it was loaded.
    newest = pki.gateway.require_key_exchange()
    assert opening.for_recipient(thumb, pki.trust) is None
    for moment in (None, datetime.fromtimestamp((end - 60_000) / 1000, UTC)):
        assert opening.key_exchange_for(pki.gateway, pki.trust, moment, thumb) == newest
    # A thumbprint the bank never issued, and the newest's own: not an ended key's.
    assert opening.decided_key_exchange(bytes(32)) is None
    assert opening.decided_key_exchange(newest[1]) is None


def _delete_key(config: BankConfig) -> None:
    backend = open_backend(bank_keys_uri(config))
    try:
        backend.delete(GATEWAY_KEX_LABEL, 1)
    finally:
        backend.close()


def _other_key(config: BankConfig) -> None:
    # v1's ended certificate kept as if it certified v2 (the newest key).
    certs = config.path(config.certs_dir)
    shutil.copyfile(certs / older_kex_name(1), certs / older_kex_name(2))


def _other_kem(config: BankConfig) -> None:
    passphrase = PinSource("file", str(config.base_dir / "keys.pass")).read()
    keys = config.base_dir / "keys"
    authenticated_kem_edit(keys, passphrase, GATEWAY_KEX_LABEL, 1, KemAlgorithm.RSA_OAEP_SHA256)


@pytest.mark.parametrize(
    ("spoil", "skipped", "loaded"),
    [
        (_delete_key, "gateway-kex.v1.der (key 'gateway-kex' v1 is gone)", []),
        (_other_key, "gateway-kex.v2.der (key 'gateway-kex' v2 is not the key it certifies)",
         [1]),
        (_other_kem, "gateway-kex.v1.der (key 'gateway-kex' v1 does not accept the key"
         " transport the certificate names)", []),
    ],
    ids=["gone", "other-key", "other-kem"],
)  # fmt: skip
def test_an_ended_certificate_whose_key_cannot_be_used_is_skipped_with_a_warning(
    config: BankConfig,
    caplog: pytest.LogCaptureFixture,
    spoil: Callable[[BankConfig], None],
    skipped: str,
    loaded: list[int],
) -> None:
    spoil(config)
    with caplog.at_level(logging.INFO, "setpay.bank"):
        pki = load_bank_pki(config)
    try:
        warned = [line for line in _lines(caplog, logging.WARNING) if line.startswith(SKIPPED)]
        # One line, naming the file and why; nothing of the key.
        assert warned == [SKIPPED + skipped]
        assert [key.version for key, _ in pki.ended_key_exchange] == loaded
    finally:
        pki.close()
    # The bank starts and serves all the same.
    running = start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    running.stop(None)


def _load_counting(
    config: BankConfig, monkeypatch: pytest.MonkeyPatch
) -> tuple[BankPki, int, list[tuple[str, int | None]]]:
    """Load the bank, counting the backend's listings and its lookups."""
    lists: list[int] = []
    gets: list[tuple[str, int | None]] = []
    listed, got = SoftwareBackend.list_keys, SoftwareBackend.get

    def counted_list(self: SoftwareBackend) -> list[KeyHandle]:
        lists.append(1)
        return listed(self)

    def counted_get(self: SoftwareBackend, label: str, version: int | None = None) -> KeyHandle:
        gets.append((label, version))
        return got(self, label, version)

    with monkeypatch.context() as patched:
        patched.setattr(SoftwareBackend, "list_keys", counted_list)
        patched.setattr(SoftwareBackend, "get", counted_get)
        pki = load_bank_pki(config)
    return pki, len(lists), gets


def test_a_bank_with_many_ended_certificates_reads_its_keys_once(
    config: BankConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Kept files whose keys are gone cost one listing of the backend for them all, not a
    lookup each (a token re-reads its objects at every version it misses); the warning
    names ten of them and counts the rest."""
    pki, one_ended, _ = _load_counting(config, monkeypatch)
    pki.close()
    certs = config.path(config.certs_dir)
    for version in range(3, 15):  # no such key versions: v2 is the newest
        shutil.copyfile(certs / older_kex_name(1), certs / older_kex_name(version))
    with caplog.at_level(logging.INFO, "setpay.bank"):
        pki, many_ended, gets = _load_counting(config, monkeypatch)
    try:
        [warned] = [line for line in _lines(caplog, logging.WARNING) if line.startswith(SKIPPED)]
        assert warned.count(" is gone)") == 10 and warned.endswith(" and 2 more")
        assert [key.version for key, _ in pki.ended_key_exchange] == [1]
    finally:
        pki.close()
    assert many_ended == one_ended
    assert not [v for label, v in gets if label == GATEWAY_KEX_LABEL and v not in (None, 2)]


def test_a_kept_file_that_is_no_certificate_is_named_at_start(config: BankConfig) -> None:
    """Whether it has ended cannot be told: the start stops as for an unreadable kept
    file, naming it, where the certificate parser's own error came out unnamed."""
    (config.path(config.certs_dir) / older_kex_name(1)).write_bytes(b"not a certificate")
    with pytest.raises(BankIncomplete, match=f"{older_kex_name(1)} in .* is no certificate"):
        load_bank_pki(config).close()
