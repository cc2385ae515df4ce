"""Keeping a client's revocation data current: the brand's BCI and CRLs from the CA.

A trust store requires a current BrandCRLIdentifier to accept any chain. The feed
fetches it from the CA at start, then again once ``interval`` has passed, or at once
when the store reports it stale (``RevocationUnavailable``). A fetch that fails leaves
the data held so far in force until it expires on its own: ``ensure_fresh`` logs the
failure and tries again an interval later, so a CA that is down neither fails nor slows
every request while what is held is current. ``refresh``, asked for when nothing current
is held, raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from clients.errors import ClientError
from setcore.errors import SetcoreError
from setcore.pki.truststore import TrustStore
from setpay.v1 import crypto_pb2

log = logging.getLogger("setpay.clients.revocation")

# How often revocation data is fetched again: a revocation the CA publishes reaches this
# client within a minute, at the cost of one small RPC a minute.
REFRESH_SECONDS = 60.0

#: Fetches the brand's current (BCI bytes, CRL DERs) from the CA.
RevocationSource = Callable[[], tuple[bytes, Sequence[bytes]]]


class RevocationFeed:
    """Installs the CA's current BCI and CRLs into a trust store, at most every interval."""

    def __init__(
        self,
        trust: TrustStore,
        source: RevocationSource,
        interval: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trust = trust
        self._source = source
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._fetched_at: float | None = None

    def refresh(self) -> bool:
        """Fetch now; True when newer data was installed. A failed fetch raises."""
        with self._lock:
            try:
                bci, crls = self._source()
                # As a bundle: an older or identical BCI is then kept out quietly, a newer
                # one must verify.
                bundle = crypto_pb2.CertBundle(brand_crl_identifier=bci, crls=list(crls))
                installed = self._trust.update_from_bundle(bundle)
            finally:
                # Tried now, whatever came of it: the next try is an interval away.
                self._fetched_at = self._clock()
        snapshot = self._trust.revocation
        if installed and snapshot is not None:
            log.info("revocation data: BCI sequence %d installed", snapshot.sequence_num)
        return installed

    def ensure_fresh(self) -> None:
        """Fetch if nothing was fetched yet or the interval has passed; a failed fetch
        raises only when the store holds no revocation data to go on with."""
        if self._trust.revocation is None:
            self.refresh()
            return
        fetched = self._fetched_at
        if fetched is not None and self._clock() - fetched < self._interval:
            return
        try:
            self.refresh()
        except (ClientError, SetcoreError) as exc:
            log.warning(
                "revocation data not refreshed (%s: %s); the data held stays in force",
                type(exc).__name__, exc,
            )  # fmt: skip
