"""Keeping a serving process's revocation data current with ``ca.db``.

``setpay ca revoke`` runs in another process: it writes a new CRL and BCI into ``ca.db``
and exits. Every serving process (CA and gateway alike) calls ``RevocationWatcher.check``
at the start of each request; at most once per ``POLL_INTERVAL_S`` that costs one small
query, and when a newer BCI is there it is verified and installed in the process's
``TrustStore`` (which then refuses the revoked certificate). The same check re-publishes
the CRLs and BCI before they lapse when the watcher holds the CA keys.

A re-publish writes ca.db, so it may wait seconds for ca.db's write lock (another process
writing it). One call at a time re-publishes, and the others do not wait for it: a call
whose poll is due meanwhile skips the re-publish but still installs ca.db's newest BCI,
a read on the store's reading connection, which waits for no writer. So a revocation
committed elsewhere is enforced within a second of the next request even while this
process's re-publish waits.

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
        # Held for a comparison only: which call polls, once per interval.
        self._claim_lock = threading.Lock()
        # One re-publish at a time; its holder may wait for ca.db. Its state (the retry
        # pause) changes under it.
        self._publish_lock = threading.Lock()
        # Installing ca.db's newest BCI, and the failure state and counters below,
        # change under it; its holder reads ca.db (``holding``: see gateway.cpu_turn).
        self._install_lock = threading.Lock()
        self._last_poll: float | None = None
        self._bci: BciRecord | None = None
        # ca.db's newest BCI was issued ahead of this clock (``publishing.issued_ahead``:
        # another process published it while the host's clock ran ahead), so it cannot
        # be installed: this process re-publishes, however much life its own BCI has.
        self._newest_ahead = False
        self._current: RevocationData | None = None
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

        A re-publish another thread has under way is waited for only with ``force``: it
        waits for ca.db's write lock, up to its busy timeout (another process writing
        ca.db), and every call of the worker polls here, the gateway's authorizations
        among them. Any other call whose poll is due skips the re-publish, and still
        installs ca.db's newest BCI (which waits for no writer): a revocation committed
        before the call began is enforced by it.
        """
        now = self._clock()
        changed = False
        if (force or self._poll_due(now)) and self._claim(now, force=force):
            changed = self._poll(now, force=force, strict=force if strict is None else strict)
        self._require_current()
        return changed

    def _claim(self, now: float, *, force: bool) -> bool:
        """Whether this call polls: with ``force``, or as the first past the interval."""
        with self._claim_lock:
            if not (force or self._poll_due(now)):
                return False  # another call polled meanwhile
            self._last_poll = now
            return True

    @contextmanager
    def _publishing(self, *, wait: bool) -> Iterator[bool]:
        """The re-publish lock, held for the block: True once it is ours, False (without
        it) when another thread holds it and ``wait`` is not asked."""
        if wait:
            with holding(self._publish_lock):  # its holder may wait for ca.db
                yield True
        elif self._publish_lock.acquire(blocking=False):
            try:
                yield True
            finally:
                self._publish_lock.release()
        else:
            yield False

    def _poll_due(self, now: float) -> bool:
        last = self._last_poll
        return last is None or now - last >= self._interval

    def _poll(self, now: float, *, force: bool, strict: bool) -> bool:
        """Re-publish if due and no other thread is at it (or ``force``), then install."""
        at = self._wall_clock()
        with self._publishing(wait=force) as ours:
            failure = self._publish(now, at, strict=strict) if ours else None
            with holding(self._install_lock):
                if failure is not None:
                    self._publish_failures += 1
                    self._report("re-publishing CRLs and the BCI", failure, now, at)
                try:
                    changed = self._install(at)
                except Exception as exc:
                    if strict:
                        raise
                    self._install_failures += 1
                    self._report("installing ca.db's newest BCI", exc, now, at)
                    return False
                # Only the call that re-published knows the re-publish is well again.
                mended = ours and failure is None and self._publish_retry_at is None
                if mended and self._failure is not None:
                    log.info(
                        "revocation data refreshed again (the last failure: %s)", self._failure
                    )
                    self._failure = None
                return changed

    def _publish(self, now: float, at: datetime, *, strict: bool) -> Exception | None:
        """Re-publish the CRLs and BCI if due (under the re-publish lock); the failure, or
        None. Raised instead if ``strict``."""
        due = self._bci is None or self._newest_ahead or bci_due(self._bci, at=at)
        if self._keys is None or not due:
            self._publish_retry_at = None  # nothing to re-publish (or another did)
            return None
        retry_at = self._publish_retry_at
        if retry_at is not None and now < retry_at and self._is_current(at):
            return None  # a failed try, too recent to try again while the data is current
        try:
            if refresh(self._store, self._keys, at=at):
                log.info("re-published CRLs and the brand CRL identifier")
        except Exception as exc:
            if strict:
                raise
            self._publish_retry_at = now + self._retry
            return exc
        self._publish_retry_at = None
        self._newest_ahead = False
        return None

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
