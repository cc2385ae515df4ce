"""Keeping a serving process's revocation data current with ``ca.db``.

``setpay ca revoke`` runs in another process: it writes a new CRL and BCI into ``ca.db``
and exits. Every serving process (CA and gateway alike) calls ``RevocationWatcher.check``
at the start of each request; at most once per ``POLL_INTERVAL_S`` that costs one small
query, and when a newer BCI is there it is verified and installed in the process's
``TrustStore`` (which then refuses the revoked certificate). The same check re-publishes
the CRLs and BCI before they lapse when the watcher holds the CA keys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway.ca.keys import AuthorityKeys
from gateway.ca.publishing import bci_due, current_revocation, refresh
from gateway.ca.records import BciRecord
from gateway.ca.store import CaStore
from gateway.cpu_turn import holding
from setcore.pki.truststore import TrustStore
from setcore.registration import RevocationData

# A revocation made elsewhere reaches this process within a second of the next request;
# the check between polls is a clock read, so calls stay cheap under load.
POLL_INTERVAL_S = 1.0

log = logging.getLogger(__name__)


class RevocationWatcher:
    """Installs the newest BCI and CRLs of ``ca.db`` into a ``TrustStore``."""

    def __init__(
        self,
        store: CaStore,
        trust: TrustStore,
        *,
        keys: AuthorityKeys | None = None,
        interval_s: float = POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._trust = trust
        self._keys = keys
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_poll: float | None = None
        self._bci: BciRecord | None = None
        self._current: RevocationData | None = None

    def current(self) -> RevocationData | None:
        """The BCI and CRLs installed last (what the CA staples to its answers)."""
        return self._current

    def check(self, *, force: bool = False) -> bool:
        """Poll ``ca.db`` if the interval has passed (or ``force``); True if data changed."""
        now = self._clock()
        last = self._last_poll
        if not force and last is not None and now - last < self._interval:
            return False
        with holding(self._lock):  # its holder may wait for ca.db (gateway.cpu_turn)
            if not force and self._last_poll is not None and now - self._last_poll < self._interval:
                return False
            self._last_poll = now
            return self._poll()

    def _poll(self) -> bool:
        due = self._bci is None or bci_due(self._bci)
        if self._keys is not None and due and refresh(self._store, self._keys):
            log.info("re-published CRLs and the brand CRL identifier")
        with self._store.read() as tx:
            sequence = tx.latest_bci_sequence()
        if self._bci is not None and sequence <= self._bci.sequence_num:
            return False
        found = current_revocation(self._store)
        if found is None:
            return False
        bci, data = found
        held = self._trust.revocation
        if held is None or held.sequence_num < bci.sequence_num:
            self._trust.update_revocation(data.bci, data.crls)
            log.info("installed brand CRL identifier %d", bci.sequence_num)
        self._bci, self._current = bci, data
        return True
