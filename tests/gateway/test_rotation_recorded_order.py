"""Which of the bank's gateway certificates were recorded after the one a process hands
out: ca.db's insertion order, never the renewing hosts' clocks.

A process on the gateway's replaced keys answers UNAVAILABLE for an envelope sealed to a
key-exchange certificate recorded in ca.db after its own (a renewal since it started, on
this host or another sharing the bank's state), and refuses one sealed to an older
certificate it does not hold (``gateway.opening_keys``). "After" was read from the
certificates' ``issued_ms``, the renewing host's clock: a renewal on a host whose clock
is behind (even by seconds, renewals close together), or one following a renewal on a
host whose clock was ahead, was taken for an older certificate, and a valid envelope
sealed to it got WRONG_RECIPIENT, final for the merchant; and an older certificate whose
key is gone, stamped later than the newest, was answered UNAVAILABLE for good.

Also two renewals since a process started: each one's certificate is answered
UNAVAILABLE, not only the last one recorded.

A ca.db that does not record the certificate a process hands out (restored from a backup
made before the last renewal) counts every certificate as recorded after it: an older
one this process does not hold is answered UNAVAILABLE, not refused. That stays so, but
the process now says it, once, at its first read of ca.db.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import gateway_renewal
from gateway.bank_pki import GATEWAY_KEX_LABEL, bank_keys_uri, load_bank_pki, open_ca_store
from gateway.config import BankConfig
from gateway.gateway_renewal import Renewal, renew_gateway_keys
from gateway.opening_keys import ca_db_reader
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from setcore.pki.certificate import common_name_of, load_certificate

from .actors import auth_request, purchase, register_cardholder, register_merchant
from .renewal_support import key_versions, stopped_bank
from .test_gateway_renewal import Served, refreshed
from .test_gateway_renewal_hosts import answered, other_host


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    # Made a day ago, so that a renewal stamped minutes behind is after the CAs begin.
    bank = Served(tmp_path / "bank", made_at=datetime.now(UTC) - timedelta(days=1))
    yield bank
    bank.stop()


def _renew_beside(
    served: Served, monkeypatch: pytest.MonkeyPatch, at: datetime | None = None
) -> Renewal:
    """Renew with the bank serving, on a host sharing its state whose clock says ``at``
    (its check for a running bank cannot see this one)."""
    with monkeypatch.context() as patched:
        patched.setattr(gateway_renewal, "check_stopped", lambda config: None)
        return renew_gateway_keys(served.config(), at=at)


def test_two_renewals_since_a_process_started(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merchant's cached PCertRes names the middle certificate: a process started
    before both renewals answers UNAVAILABLE for it, as for the last one's."""
    old_process = served.world  # on v1
    merchant = register_merchant(old_process, "M-order-2")
    cardholder = register_cardholder(old_process)
    _renew_beside(served, monkeypatch)  # v2
    with other_host(served) as on_v2:
        to_v2 = refreshed(on_v2, merchant)
    sealed_to_v2 = auth_request(to_v2, purchase(to_v2, cardholder, 600))
    _renew_beside(served, monkeypatch)  # v3
    with other_host(served) as on_v3:
        to_v3 = refreshed(on_v3, merchant)
    sealed_to_v3 = auth_request(to_v3, purchase(to_v3, cardholder, 650))
    assert answered(old_process, to_v2, *sealed_to_v2) == "UNAVAILABLE"
    assert answered(old_process, to_v3, *sealed_to_v3) == "UNAVAILABLE"
    # What it holds still opens.
    bought = purchase(merchant, cardholder, 700)
    assert answered(old_process, merchant, *auth_request(merchant, bought)) == (
        "AUTH_CODE_APPROVED"
    )


@pytest.mark.parametrize(
    ("first_skew", "gap"),
    [
        (timedelta(0), -timedelta(minutes=10)),
        (timedelta(0), -timedelta(seconds=1)),
        (timedelta(minutes=4), -timedelta(minutes=4) + timedelta(seconds=1)),
    ],
    ids=["second-host-10-min-behind", "second-host-2-s-behind", "first-host-4-min-ahead"],
)
def test_a_renewal_stamped_before_the_certificate_a_process_hands_out(
    served: Served, monkeypatch: pytest.MonkeyPatch, first_skew: timedelta, gap: timedelta
) -> None:
    """The process runs on v2; v3 is recorded after it, by a host whose clock stamps it
    ``gap`` from v2's stamp (a host 2 s behind, a second after; or a right clock after a
    host 4 min ahead): an envelope sealed to v3 is answered UNAVAILABLE, not refused."""
    merchant = register_merchant(served.world, "M-order-1")
    cardholder = register_cardholder(served.world)
    served.stop()
    v2_at = datetime.now(UTC) + first_skew
    v2 = renew_gateway_keys(served.config(), at=v2_at)
    old_process = served.start()  # on v2
    v3 = _renew_beside(served, monkeypatch, v2_at + gap)
    stamped = _issued_ms(served.config())
    assert stamped[v3.key_exchange.thumb] < stamped[v2.key_exchange.thumb]  # the clocks' doing
    with other_host(served) as new_host:
        fresh = refreshed(new_host, merchant)  # PCertRes hands out v3
        assert fresh.gateway_kex.thumbprint == v3.key_exchange.thumb
        sealed_to_v3 = auth_request(fresh, purchase(fresh, cardholder, 600))
        assert answered(new_host, fresh, *sealed_to_v3) == "AUTH_CODE_APPROVED"
        # The same bytes again to the process still on v2, as a load balancer may send them.
        sealed_again = auth_request(fresh, purchase(fresh, cardholder, 610))
        assert answered(old_process, fresh, *sealed_again) == "UNAVAILABLE"


def test_an_older_certificate_stamped_after_the_newest_whose_key_is_gone_is_refused(
    served: Served,
) -> None:
    """The reverse: v2, stamped by a host whose clock was ahead, later than v3 recorded
    after it; v2's key deleted. No process of the bank will open what is sealed to v2:
    refused as sealed to another (WRONG_RECIPIENT), never UNAVAILABLE until it ends."""
    merchant = register_merchant(served.world, "M-order-3")
    cardholder = register_cardholder(served.world)
    served.stop()
    v2 = renew_gateway_keys(served.config(), at=datetime.now(UTC) + timedelta(minutes=4))
    on_v2 = served.start()
    to_v2 = refreshed(on_v2, merchant)
    sealed_to_v2 = auth_request(to_v2, purchase(to_v2, cardholder, 600))
    served.stop()
    v3 = renew_gateway_keys(served.config())
    stamped = _issued_ms(served.config())
    assert stamped[v2.key_exchange.thumb] > stamped[v3.key_exchange.thumb]
    backend = open_backend(bank_keys_uri(served.config()))
    try:
        backend.delete(GATEWAY_KEX_LABEL, 2)
    finally:
        backend.close()
    assert (GATEWAY_KEX_LABEL, 2) not in key_versions(served.config())
    world = served.start()  # on v3, without v2's key
    for _ in range(2):  # sent again, as a merchant does: refused each time
        assert answered(world, to_v2, *sealed_to_v2) == "ERROR_CODE_WRONG_RECIPIENT"


def test_ca_list_keeps_its_order_and_the_reader_its_own(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``listed_certificates`` (``setpay ca list``) still lists by issue time; what was
    recorded after a certificate is read in insertion order, and all of a subject's
    certificates are after one ca.db does not record."""
    v2 = _renew_beside(served, monkeypatch, datetime.now(UTC) + timedelta(minutes=4))
    v3 = _renew_beside(served, monkeypatch)
    config = served.config()
    subject = common_name_of(
        load_certificate((config.path(config.certs_dir) / "gateway-sig.der").read_bytes())
    )
    store = open_ca_store(config)
    try:
        with store.read() as tx:
            listed = [c.thumb for c, _ in tx.listed_certificates(subject=subject)]
            after_v2 = [c.thumb for c, _ in tx.recorded_after(v2.key_exchange.thumb,
                                                              subject=subject)]  # fmt: skip
            after_v3 = list(tx.recorded_after(v3.key_exchange.thumb, subject=subject))
            after_none = [c.thumb for c, _ in tx.recorded_after(b"\0" * 32, subject=subject)]
            other = list(tx.recorded_after(b"\0" * 32, subject=subject + "-not"))
    finally:
        store.close()
    v2_pair = [v2.signature.thumb, v2.key_exchange.thumb]
    v3_pair = [v3.signature.thumb, v3.key_exchange.thumb]
    assert listed[-4:] == v3_pair + v2_pair  # by issued_ms: v2 was stamped 4 min ahead
    assert after_v2 == v3_pair
    assert after_v3 == []
    assert after_none == listed_in_insertion_order(listed, v2_pair, v3_pair)
    assert other == []


def listed_in_insertion_order(
    listed: list[bytes], v2_pair: list[bytes], v3_pair: list[bytes]
) -> list[bytes]:
    """``listed`` with the two renewals' certificates in the order they were recorded."""
    return [t for t in listed if t not in v2_pair + v3_pair] + v2_pair + v3_pair


def _issued_ms(config: BankConfig) -> dict[bytes, int]:
    """Each certificate's ``issued_ms`` as ca.db records it."""
    store = open_ca_store(config)
    try:
        with store.read() as tx:
            return {c.thumb: c.issued_ms for c, _ in tx.listed_certificates()}
    finally:
        store.close()


@pytest.mark.parametrize("restored", [False, True], ids=["ca.db-intact", "ca.db-restored"])
def test_a_ca_db_that_does_not_record_the_certificate_handed_out_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restored: bool
) -> None:
    """ca.db restored from the backup made before the renewal: it records v1, not v2,
    which the process hands out. Every certificate then counts as recorded after v2 (v1
    among them): the reader says so at its first read, and only then."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - timedelta(days=1))
    ca_db = config.path(config.ca_db)
    shutil.copy(ca_db, tmp_path / "ca.db.backup")
    v1_kex = (config.path(config.certs_dir) / "gateway-kex.der").read_bytes()
    v2 = renew_gateway_keys(config)
    if restored:
        for suffix in ("-wal", "-shm"):
            Path(f"{ca_db}{suffix}").unlink(missing_ok=True)
        shutil.copy(tmp_path / "ca.db.backup", ca_db)
    pki = load_bank_pki(config)
    try:
        assert pki.gateway.key_exchange_thumb == v2.key_exchange.thumb
        read = ca_db_reader(ca_db, pki.gateway, pki.pca.signature_thumb)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="setpay.gateway"):
            live = [read() for _ in range(3)]
    finally:
        pki.close()
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("ca.db does not record the gateway's key-exchange")
    ]
    v1_thumb = thumbprint(v1_kex)
    if restored:
        assert warned == [
            f"ca.db does not record the gateway's key-exchange certificate"
            f" {v2.key_exchange.thumb.hex()[:8]} that this process hands out (ca.db restored"
            " from a backup older than the last renewal?): an envelope sealed to an older"
            " key-exchange certificate of the gateway that this process does not hold is"
            " answered UNAVAILABLE, not refused, until ca.db records it"
        ]
        assert all(v1_thumb in found for found in live)  # the residual the log names
    else:
        assert warned == []
        assert live == [{}, {}, {}]
