"""A call that skips a re-publish under way still installs what ca.db holds.

One call's poll re-publishes the CRLs and BCI and waits for ca.db's write lock (another
process writing ca.db: another worker's issuance, a shell), up to the busy timeout. The
worker's other calls do not wait for it; they used to go on with the revocation data
installed, so a revocation ``setpay ca revoke`` committed before such a call began was not
enforced for those seconds. Now a call whose poll is due skips the re-publish only: it
installs ca.db's newest BCI, read on the store's reading connection, which waits for no
writer. And it still refuses revocation data no longer current.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import closing, suppress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.ca import CaStore, RevocationWatcher, publishing
from gateway.ca.errors import RevocationStale
from gateway.ca.publishing import current_revocation, record_certificate
from setcore.errors import ProtocolError
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage

from .conftest import Bank
from .revocation_support import DUE_AGE, LAPSED_AGE, authority_keys, bank_trust, new_ca_db
from .test_ca_store_waits import LOCK_S, PROMPT_S, SETTLE_S, locked_for


def _quietly(call: Callable[[], object]) -> Callable[[], None]:
    """``call`` for a thread, its failure (RevocationStale, here) left to the test's asserts."""

    def run() -> None:
        with suppress(Exception):
            call()

    return run


def test_a_call_skipping_a_re_publish_under_way_enforces_a_revocation_made_before_it(
    ec_bank: Bank, tmp_path: Path
) -> None:
    pki = ec_bank.pki
    keys = authority_keys(pki, pki.backend)
    gateway_der = pki.gateway.signature_cert
    with closing(new_ca_db(tmp_path / "ca.db", pki, age=DUE_AGE)) as store:
        with store.write() as tx:
            record_certificate(tx, gateway_der, keys.gateway.issuing, datetime.now(UTC))
        trust = bank_trust(pki)
        found = current_revocation(store)
        assert found is not None
        trust.update_revocation(found[1].bci, found[1].crls, datetime.now(UTC))
        # Due for re-publishing: this watcher's first poll re-publishes.
        watcher = RevocationWatcher(store, trust, keys=keys, interval_s=0.0)
        # ``setpay ca revoke`` in another process, committed now.
        with closing(CaStore.open(store.path)) as other:
            thumb = publishing.describe_certificate(
                gateway_der, keys.gateway.issuing.thumbprint, datetime.now(UTC)
            ).thumb
            publishing.revoke(other, keys, thumb=thumb)
        # Then another process writes ca.db for a while; this worker's re-publish waits.
        with locked_for(store.path, LOCK_S):
            publisher = threading.Thread(target=watcher.check)
            publisher.start()
            time.sleep(SETTLE_S)
            started = time.monotonic()
            watcher.check()  # a call of the worker, begun well after the revocation
            waited = time.monotonic() - started
            snapshot = trust.revocation
            with pytest.raises(ProtocolError):
                trust.verify_chain(
                    gateway_der,
                    [pki.pca.signature_cert],
                    PAYMENT_GATEWAY,
                    CertificateUsage.SIGNATURE,
                )
            publisher_waiting = publisher.is_alive()
        publisher.join()
        # It did not wait for the re-publish, and installed the revocation's BCI.
        assert waited < PROMPT_S and publisher_waiting
        assert snapshot is not None and snapshot.sequence_num == 2
        # The poll under way ended once ca.db was free, holding what ca.db holds.
        newest = current_revocation(store)
        assert newest is not None and watcher.current() == newest[1]


def test_a_call_skipping_a_re_publish_under_way_refuses_lapsed_data(
    ec_bank: Bank, tmp_path: Path
) -> None:
    pki = ec_bank.pki
    with closing(new_ca_db(tmp_path / "ca.db", pki, age=LAPSED_AGE)) as store:
        trust = bank_trust(pki)
        found = current_revocation(store)
        assert found is not None
        # Installed as of its day; lapsed now.
        issued = datetime.fromtimestamp(found[0].issued_ms / 1000 + 60, UTC)
        trust.update_revocation(found[1].bci, found[1].crls, issued)
        keys = authority_keys(pki, pki.backend)
        watcher = RevocationWatcher(store, trust, keys=keys, interval_s=0.0)
        with locked_for(store.path, LOCK_S):
            publisher = threading.Thread(target=_quietly(watcher.check))
            publisher.start()
            time.sleep(SETTLE_S)
            started = time.monotonic()
            with pytest.raises(RevocationStale):
                watcher.check()
            waited = time.monotonic() - started
            publisher_waiting = publisher.is_alive()
        publisher.join()
        assert waited < PROMPT_S and publisher_waiting


def test_a_call_within_the_interval_of_a_poll_under_way_reads_nothing(
    ec_bank: Bank, tmp_path: Path
) -> None:
    """Skipping a re-publish is no poll of every call: within the interval after the
    poll under way began, a call reads nothing of ca.db (a clock read, as before)."""
    pki = ec_bank.pki
    with closing(new_ca_db(tmp_path / "ca.db", pki, age=DUE_AGE)) as store:
        trust = bank_trust(pki)
        found = current_revocation(store)
        assert found is not None
        trust.update_revocation(found[1].bci, found[1].crls, datetime.now(UTC))
        keys = authority_keys(pki, pki.backend)
        watcher = RevocationWatcher(store, trust, keys=keys, interval_s=60.0)
        statements: list[str] = []
        with locked_for(store.path, LOCK_S):
            publisher = threading.Thread(target=watcher.check)
            publisher.start()
            time.sleep(SETTLE_S)
            store._reader.set_trace_callback(statements.append)
            try:
                assert watcher.check() is False
            finally:
                store._reader.set_trace_callback(None)
        publisher.join()
        assert statements == []
