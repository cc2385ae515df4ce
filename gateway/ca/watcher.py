"""Keeping a serving process's revocation data current with ``ca.db``.

``setpay ca revoke`` runs in another process: it writes a new CRL and BCI into ``ca.db``
and exits. Every serving process (CA and gateway alike) calls ``RevocationWatcher.check``
at the start of each request; at most once per ``POLL_INTERVAL_S`` that costs one small
query, and when a newer BCI is there it is verified and installed in the process's
``TrustStore`` (which then refuses the revoked certificate). The same check re-publishes
the CRLs and BCI before they lapse when the watcher holds the CA keys.

A refresh that fails (the key backend or ca.db unavailable, a BCI in ca.db that does not
verify) fails no request: it is logged, counted (``counters``) and tried again later,
and requests go on while the data held is current. That is what re-publishing with half
of the BCI's lifetime left is for. Only once the data held is no longer current (the
BCI past its notAfter, or a CRL it lists past its nextUpdate) does ``check`` raise
``RevocationStale``, which the servicers answer with UNAVAILABLE: certificates cannot be
judged, and a refusal would tell the peer its certificate was at fault.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.ca.errors import CaUnavailable, RevocationStale
from gateway.ca.keys import AuthorityKeys
from gateway.ca.publishing import bci_due, current_revocation, issued_ahead, refresh
from gateway.ca.records import BciRecord
from gateway.ca.store import CaStore
from gateway.cpu_turn import holding
from hsm.errors import KeyBackendError
from setcore.errors import ProtocolError
from setcore.pki.bci import RevocationSnapshot
from setcore.pki.truststore import TrustStore
from setcore.registration import RevocationData

# A revocation made elsewhere reaches this process within a second of the next request;
# the check between polls is a clock read, so calls stay cheap under load.
POLL_INTERVAL_S = 1.0
# After a failed re-publish the next try waits this long, not the next poll: a try may
# hold its request for ca.db's busy timeout, and with half of the BCI's lifetime (twelve
# hours) left at the first try a minute between tries costs nothing. The same pause
# spaces the log lines of a failure that persists. Once the data held is no longer
# current, every poll tries again.
REFRESH_RETRY_S = 60.0

# What a refresh meets when the key backend or ca.db is away, or ca.db holds a BCI that
# does not verify. Not ``StoreBug`` (``ConstraintViolation`` among them): ca.db refusing a
# new CRL or BCI, or a statement, is a bug, and its traceback goes to the log.
_EXPECTED = (CaUnavailable, KeyBackendError, ProtocolError)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatcherCounters:
    """Failed refresh steps since the watcher started (copied into metrics)."""

    #: Re-publishing the CRLs and BCI failed (key backend, ca.db).
    publish_failures: int
    #: Reading ca.db's newest BCI or installing it failed (ca.db, a BCI that does not verify).
    install_failures: int


def valid_until(snapshot: RevocationSnapshot) -> datetime:
    """Until when chain validation takes this revocation data as current
    (``setcore.pki.chain``): the BCI's notAfter, or a listed CRL's nextUpdate if sooner."""
    ends = [s.next_update for s in snapshot.by_issuer.values() if s.next_update is not None]
    return min([snapshot.not_after, *ends])


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RevocationWatcher:
    """Installs the newest BCI and CRLs of ``ca.db`` into a ``TrustStore``.

    ``clock`` (monotonic seconds) spaces polls and retries; ``wall_clock`` dates the
    revocation data: when it is due for re-publishing, and whether it is still current.
    """

    def __init__(
        self,
        store: CaStore,
        trust: TrustStore,
        *,
        keys: AuthorityKeys | None = None,
        interval_s: float = POLL_INTERVAL_S,
        retry_s: float = REFRESH_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store = store
        self._trust = trust
        self._keys = keys
        self._interval = interval_s
        self._retry = retry_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._last_poll: float | None = None
        self._bci: BciRecord | None = None
        # ca.db's newest BCI was issued ahead of this clock (``publishing.issued_ahead``:
        # another process published it while the host's clock ran ahead), so it cannot
        # be installed: this process re-publishes, however much life its own BCI has.
        self._newest_ahead = False
        self._current: RevocationData | None = None
        # Failure state, changed under the lock only.
        self._publish_retry_at: float | None = None  # a failed re-publish waits for this
        self._failure: str | None = None  # the last failure, until a poll succeeds
        self._next_report = 0.0
        self._publish_failures = 0
        self._install_failures = 0
        # The trust store's snapshot last judged and its end (one per BCI, not per call),
        # and whether the lapse was logged; set by any caller (a race logs twice at worst).
        self._judged: tuple[RevocationSnapshot, datetime] | None = None
        self._stale_reported = False

    def current(self) -> RevocationData | None:
        """The BCI and CRLs installed last (what the CA staples to its answers)."""
        return self._current

    @property
    def counters(self) -> WatcherCounters:
        """Failed refresh steps so far."""
        return WatcherCounters(self._publish_failures, self._install_failures)

    def held_until(self) -> datetime | None:
        """Until when the revocation data held is current (``valid_until``); None while
        none is held. The metrics read it here: this package imports them, not the reverse."""
        snapshot = self._trust.revocation
        return None if snapshot is None else valid_until(snapshot)

    def check(self, *, force: bool = False, strict: bool | None = None) -> bool:
        """Poll ``ca.db`` if the interval has passed (or ``force``); True if data changed.

        A refresh that fails is logged and tried again at a later poll; the call returns
        as long as the revocation data held is current, and raises ``RevocationStale``
        once it is not. With ``strict`` (by default ``force``: right after a revocation
        made here) the failure itself is raised: the caller has to know. At start the CA
        polls with ``force`` but not ``strict``: a worker restarted while the CA keys'
        token is away starts on current data, as a running one goes on serving.

        A poll another thread has under way is waited for only with ``force``; any other
        call goes on with the data held, as between polls. A re-publish waits for ca.db's
        write lock, up to its busy timeout (another process writing ca.db): every call of
        the worker polls here, the gateway's authorizations among them, and each one
        past the interval waited behind it.
        """
        now = self._clock()
        changed = False
        if force or self._poll_due(now):
            with self._polling(wait=force) as polling:
                if polling and (force or self._poll_due(now)):
                    self._last_poll = now
                    changed = self._poll(now, strict=force if strict is None else strict)
        self._require_current()
        return changed

    @contextmanager
    def _polling(self, *, wait: bool) -> Iterator[bool]:
        """The poll lock, held for the block: True once it is ours, False (without it)
        when another thread holds it and ``wait`` is not asked."""
        if wait:
            with holding(self._lock):  # its holder may wait for ca.db (gateway.cpu_turn)
                yield True
        elif self._lock.acquire(blocking=False):
            try:
                yield True
            finally:
                self._lock.release()
        else:
            yield False

    def _poll_due(self, now: float) -> bool:
        last = self._last_poll
        return last is None or now - last >= self._interval

    def _poll(self, now: float, *, strict: bool) -> bool:
        at = self._wall_clock()
        current = self._is_current(at)
        failed = False
        due = self._bci is None or self._newest_ahead or bci_due(self._bci, at=at)
        if self._keys is None or not due:
            self._publish_retry_at = None  # nothing to re-publish (or another did)
        elif self._publish_retry_at is None or now >= self._publish_retry_at or not current:
            try:
                if refresh(self._store, self._keys, at=at):
                    log.info("re-published CRLs and the brand CRL identifier")
                self._publish_retry_at = None
                self._newest_ahead = False
            except Exception as exc:
                if strict:
                    raise
                failed = True
                self._publish_failures += 1
                self._publish_retry_at = now + self._retry
                self._report("re-publishing CRLs and the BCI", exc, now, at)
        try:
            changed = self._install(at)
        except Exception as exc:
            if strict:
                raise
            self._install_failures += 1
            self._report("installing ca.db's newest BCI", exc, now, at)
            return False
        if not failed and self._publish_retry_at is None and self._failure is not None:
            log.info("revocation data refreshed again (the last failure: %s)", self._failure)
            self._failure = None
        return changed

    def _install(self, at: datetime) -> bool:
        with self._store.read() as tx:
            sequence = tx.latest_bci_sequence()
        if self._bci is not None and sequence <= self._bci.sequence_num:
            return False
        found = current_revocation(self._store)
        if found is None:
            return False
        bci, data = found
        # Refused by the trust store below, as not yet valid; the next poll re-publishes.
        self._newest_ahead = issued_ahead(bci.issued_ms, int(at.timestamp() * 1000))
        held = self._trust.revocation
        if held is None or held.sequence_num < bci.sequence_num:
            self._trust.update_revocation(data.bci, data.crls, at)
            log.info("installed brand CRL identifier %d", bci.sequence_num)
        self._bci, self._current = bci, data
        return True

    def _report(self, step: str, exc: Exception, now: float, at: datetime) -> None:
        """Log a failed step: a new failure at once, the same one again at most once per
        retry pause. Its words are ours, sqlite's or the backend's: never key material."""
        failure = f"{step}: {type(exc).__name__}: {exc}"
        if failure == self._failure and now < self._next_report:
            return
        self._failure, self._next_report = failure, now + self._retry
        # A failure of the parts the refresh uses is expected now and then; anything
        # else is a bug, and its traceback goes to the log too.
        trace = None if isinstance(exc, _EXPECTED) else exc
        snapshot = self._trust.revocation
        if snapshot is not None and self._is_current(at):
            log.warning(
                "revocation refresh failed (%s); serving with BCI %d, current until %s; "
                "trying again later", failure, snapshot.sequence_num,
                valid_until(snapshot).isoformat(timespec="seconds"), exc_info=trace,
            )  # fmt: skip
        else:
            log.error(
                "revocation refresh failed (%s); no current revocation data", failure,
                exc_info=trace,
            )  # fmt: skip

    def _is_current(self, at: datetime) -> bool:
        snapshot = self._trust.revocation
        if snapshot is None:
            return False
        judged = self._judged
        if judged is None or judged[0] is not snapshot:
            judged = self._judged = (snapshot, valid_until(snapshot))
        return at <= judged[1]

    def _require_current(self) -> None:
        if self._is_current(self._wall_clock()):
            self._stale_reported = False
            return
        if not self._stale_reported:
            self._stale_reported = True
            log.error(
                "no current revocation data: requests are answered UNAVAILABLE until a "
                "refresh succeeds (the last failure: %s)", self._failure or "none",
            )  # fmt: skip
        raise RevocationStale("no current revocation data")
