"""The link to one token: login, session pool, object-handle cache, and recovery.

``TokenLink`` keeps one long-lived logged-in session per process (PKCS#11 login state
belongs to the process, not to a session) plus a bounded pool of working sessions, both
held, closed and guarded by the module lock in ``hsm.session_keeper``. Every token call
goes through ``TokenLink.run``, which:

1. leases a pool slot (bounded wait: ``TransientBackendError`` "session pool exhausted");
2. takes the module lock (token calls are serialized per process, see ``hsm.cryptoki``),
   waiting at most as long as for the pool: a token call that never returns (a network
   HSM gone quiet) holds it, and callers and ``check_health`` then answer
   ``TransientBackendError`` instead of waiting behind it for ever;
3. reconnects if needed: after anyone re-initialized the module, after the token went
   away. Reconnecting = re-initialize, find the token by label or serial (never slot
   number), log in, under an exclusive file lock shared by every process using that
   token (named after the token, however the URI names it: ``hsm.token_login``'s "Lock
   names"), with bounded attempts. A wrong PIN is never retried, and once refused it is
   not offered again until the PIN source changes (a PIN file: by no process of this
   host; ``hsm.token_login``). A login re-initializes first when the module's view of
   the token's PIN state may be out of date (``hsm.token_login.view_may_be_stale``);
   a refusal by a view older than the login stays in its backend, not shared;
4. validates the leased session (same process, same module generation) or opens one;
5. runs the operation, and on a CKR error decides with ``hsm.ckr`` whether to reconnect
   and retry once (token lost, logged out), to drop the object caches and retry once (a
   cached handle whose object was destroyed elsewhere), or to translate and raise;
6. gives the session back to the pool only if the operation returned, raised one of
   setpay's own errors, or had its input refused by a single-part call (the token has
   then ended the call: a bad ciphertext from a peer costs no session). After any other
   error its state is not known (an operation may still be active on it), so it is
   closed and the next call opens a new one.

When the token disappears, operations and ``check_health`` raise
``TransientBackendError``; once it is back, the next call reconnects and logs in again,
without a restart. While it is away, or has no user PIN yet (re-initialized, its user
PIN still to be set), the module is restarted to look again at most once per
``ABSENT_RESCAN_SECONDS``: a restart logs out every backend of the process. Logins and
re-logins are reported to the observer ("login", "relogin").

A link belongs to the process that opened it: in a child forked after that, calls and
``check_health`` raise ``PermanentBackendError`` ("opened before fork"), since its
sessions and its login are the parent's, not the child's (a backend the child opens
itself logs in on its own). ``close`` closes nothing of the parent's.

Known limit: if two backends in one process use the same token, the second finds the
process already logged in (CKR_USER_ALREADY_LOGGED_IN, taken as success) and its PIN is
not checked by the token. Closing a backend closes its own sessions and logs nobody out
explicitly: the token ends the process's login when its last session there closes.

Errors raised: ``TransientBackendError``, ``PermanentBackendError``, ``KeyNotFound`` and
the translations of ``hsm.ckr``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pkcs11 import Mechanism
from pkcs11 import exceptions as p11

from hsm.ckr import Fault, ckr_name, fault_of, translate
from hsm.cryptoki import cryptoki, on_fork_in_child
from hsm.errors import (
    DecapsulationError,
    KeyBackendError,
    KeyNotFound,
    PermanentBackendError,
    TokenAbsent,
    TransientBackendError,
)
from hsm.filelock import exclusive_lock, lock_directory
from hsm.observer import Observer, observed, waiting
from hsm.session_keeper import SessionKeeper, TokenSession, take_module
from hsm.session_pool import Lease, PoolStats
from hsm.token_config import (
    DEFAULT_LOGIN_ATTEMPTS,
    DEFAULT_POOL_SIZE,
    DEFAULT_POOL_WAIT_SECONDS,
    Pkcs11Config,
)
from hsm.token_login import LoginCalls, PinLatch, TokenLocks, note_login_view, view_may_be_stale

__all__ = [
    "ABSENT_RESCAN_SECONDS",
    "DEFAULT_LOGIN_ATTEMPTS",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_POOL_WAIT_SECONDS",
    "LOCK_TIMEOUT_SECONDS",
    "Pkcs11Config",
    "TokenLink",
    "TokenSession",  # hsm.session_keeper's, named here too: callers import it from here
]

T = TypeVar("T")

#: Pause before login attempt n is n times this: short next to a login (~2-20 ms).
LOGIN_RETRY_PAUSE_SECONDS = 0.02

#: Longest wait for another process's login (or key generation) to finish.
LOCK_TIMEOUT_SECONDS = 30.0

#: Times ``admin_lock`` takes the key lock again when the token it names changed while
#: it waited (a reconnect found another token under the label): each such change is an
#: operator re-initializing the token, so a third in one wait means something is wrong.
KEY_LOCK_ATTEMPTS = 3

#: While a known token is absent (or has no user PIN yet), the shortest time between two
#: module restarts made to look at it again. A restart (C_Finalize + C_Initialize) kills
#: every session of the process, so every other token's backend must log in again; a
#: health watcher polling an absent token would otherwise cause that on each poll. Calls
#: in between get the cached error at no cost, and a token that is put back (or given
#: its user PIN) is used within this time. Also the shortest time between two restarts
#: made for changes of one PIN file: a file whose times move at every look (rewritten by
#: an agent, a secret store reporting "now") would otherwise restart it at every login.
ABSENT_RESCAN_SECONDS = 1.0


class KeyLockHeld(threading.local):
    """The stem of the key lock this thread holds (``TokenLink.admin_lock``), if any.

    Read at every token call (``_ensure_connected``), by signing threads that never take
    the lock: the class attribute answers them in ~30 ns, where ``getattr(local, name,
    None)`` on a plain ``threading.local`` never set in the thread raises and catches an
    AttributeError inside, ~300 ns.
    """

    stem: str | None = None


class TokenLink:
    """One backend's connection to its token (see the module docstring)."""

    def __init__(self, config: Pkcs11Config, observer: Observer | None = None) -> None:
        self.config = config
        self.name = config.token_name()
        self._observer = observer
        self._cryptoki = cryptoki(config.module)
        self._calls = LoginCalls(self._cryptoki.path)
        self._sessions = SessionKeeper(
            self._cryptoki, self.name, config.pool_size, config.pool_wait_seconds
        )
        self._token: Any = None
        self._broken = True
        self._closed = False
        self._logins = 0
        self._failed_connects = 0
        # When our last rescan found the token not usable yet (time.monotonic()), and the
        # error it gave: absent (a known token), or without a user PIN. None otherwise.
        self._unready: tuple[float, str] | None = None
        self._epoch = 0
        self._pid = os.getpid()
        self.mechanisms: frozenset[Mechanism] = frozenset()
        self._pin_latch = PinLatch(config.pin_source)
        where = (config.module, lock_directory(config.lock_dir))
        self._locks = TokenLocks(*where, self._pin_latch, config.token_label, config.token_serial)
        self._key_lock = KeyLockHeld()
        on_fork_in_child(self)
        take_module(self._cryptoki.lock, None)
        try:
            self._ensure_connected()
        finally:
            self._cryptoki.lock.release()

    def run(
        self,
        operation: Callable[[TokenSession], T],
        action: str,
        *,
        retry: bool = True,
        subject: str = "object",
        peer_input: bool = False,
    ) -> T:
        """Run ``operation`` on a valid session; recover and translate errors.

        ``retry`` allows one more run after reconnecting (only for operations that are
        safe to repeat); ``subject`` names what a "no such object" is about.
        ``peer_input`` says the operation's data comes from outside the bank (a
        ciphertext to decapsulate): a general error on it is taken for bad input at
        once. On the bank's own data (a key search, a digest to sign) SoftHSM's general
        error with the token present and logged in is a passing fault (seen when several
        processes open one token together), so a repeatable operation runs once more
        before the error counts as the operation's own.
        """
        self._refuse_if_unusable()
        with self._sessions.pool.lease() as lease, self._sessions.module_lock(action):
            attempts = 2 if retry else 1
            for attempt in range(attempts):
                self._ensure_connected()
                session: TokenSession | None = None
                try:
                    # Opening the session is a token call too: its faults are handled below.
                    session = self._session_for(lease)
                    return operation(session)
                except KeyBackendError:
                    # setpay's own refusals, made between complete token calls (as every
                    # operation must): the session is idle and goes back to the pool.
                    raise
                except p11.PKCS11Error as exc:
                    ended = session is not None and session.ended is exc
                    fault = fault_of(exc)
                    ambiguous = fault is Fault.AMBIGUOUS
                    if fault in (Fault.AMBIGUOUS, Fault.STALE_OBJECT, Fault.DEAD_SESSION):
                        fault = self._settle(fault, session)
                    again = attempt + 1 < attempts
                    if fault is Fault.DEAD_SESSION and attempt:
                        # A new session died too: more than one session's trouble.
                        fault = Fault.TOKEN_LOST
                    if fault in (Fault.TOKEN_LOST, Fault.LOGGED_OUT):
                        lease.evict()  # dead anyway once the module restarts to reconnect
                        self._broken = True
                        if again:
                            continue
                    elif not (ended and fault is Fault.INPUT):
                        # Kept after bad input to a single-part call, the token present
                        # and logged in: the token ended the call (TokenSession.single_part),
                        # and retiring would cost C_CloseSession, C_OpenSession and a key
                        # lookup (0.25-0.7 ms) under the module lock per bad ciphertext,
                        # which anyone reaching the open CA port can send. SoftHSM 2.6
                        # answers every bad OAEP ciphertext with CKR_GENERAL_ERROR, so this
                        # takes INPUT as settled, not only as reported.
                        self._sessions.retire(lease)
                    passing = ambiguous and fault is Fault.INPUT and not peer_input
                    if passing and not isinstance(exc, p11.NoSuchKey) and again:
                        continue
                    if fault is Fault.DEAD_SESSION and again:
                        continue  # retired above: the next run opens a new session
                    if isinstance(exc, p11.OperationActive) and again:
                        # Left active on that session by an earlier call, not this one's
                        # fault: the new session has nothing active.
                        continue
                    if fault is Fault.STALE_OBJECT:
                        # The session was not at fault; a cached handle was. Look it up again.
                        self.invalidate_objects()
                        if again:
                            continue
                    if fault is Fault.STALE_OBJECT or (
                        fault is Fault.INPUT and isinstance(exc, p11.NoSuchKey)
                    ):
                        raise KeyNotFound(f"{subject} is not on {self.name}") from exc
                    error = translate(exc, fault, action, self.name)
                    # A decapsulation failure carries no cause: which check failed is
                    # what a padding oracle needs, and causes travel into logs.
                    raise error from (None if isinstance(error, DecapsulationError) else exc)
                except BaseException:
                    # Anything else (an interrupt, a library error between two calls of
                    # one operation) may have left an operation active on the session.
                    self._sessions.retire(lease)
                    raise
                finally:
                    if session is not None:
                        session.ended = None
            raise TransientBackendError(f"{self.name} cannot {action} now")  # unreachable

    @contextlib.contextmanager
    def admin_lock(self) -> Iterator[None]:
        """Exclusive across processes while key versions are claimed or destroyed.

        The key lock of the token the link reaches now: it connects first (a token gone
        counts as not connected: the label may name another token by now, with locks of
        its own), takes the lock, and takes the new one should a reconnect meanwhile have
        renamed it. ``run`` under it refuses a token that is no longer the lock's.
        """
        for _ in range(KEY_LOCK_ATTEMPTS):
            self._refuse_if_unusable()
            with self._sessions.module_lock("take its key lock"):
                self._broken = self._broken or not self._token_present()
                self._ensure_connected()
            stem = self._locks.stem
            with exclusive_lock(f"{stem}.keys.lock", LOCK_TIMEOUT_SECONDS):
                if stem != self._locks.stem:
                    continue  # renamed while this thread waited: take the new name's
                self._key_lock.stem = stem
                try:
                    yield
                finally:
                    self._key_lock.stem = None
                return
        raise TransientBackendError(f"{self.name} kept changing while its key lock was taken")

    @property
    def pool_stats(self) -> PoolStats:
        """The session pool's size, leases out and summed waits (for metrics)."""
        return self._sessions.pool.stats

    @property
    def epoch(self) -> int:
        """Changes whenever cached object handles may be stale."""
        return self._epoch

    def invalidate_objects(self) -> None:
        """Drop every session's object cache (after objects were destroyed)."""
        self._epoch += 1

    def check_health(self) -> None:
        """Raise ``TransientBackendError`` unless the token is there and we are logged in."""
        self._refuse_if_unusable()
        with self._sessions.module_lock("report its health"):
            self._ensure_connected()
            if not self._token_present():
                self._broken = True
                raise TransientBackendError(f"{self.name} is not present")

    def close(self) -> None:
        """Close every session (``SessionKeeper.close``); later calls are refused."""
        self._closed = True  # checked before any new call leases or waits
        self._sessions.close()

    def after_fork_in_child(self) -> None:
        """The parent's sessions are not ours: forget them without closing any (this link
        is refused in the child, see the module docstring; ``close`` still works)."""
        self._sessions.after_fork_in_child()
        self._token = None
        self._broken = True

    def _refuse_if_unusable(self) -> None:
        # Also before waiting for the pool or the module lock: a closed backend says so at
        # once, even while a token call that does not return holds the module.
        if self._closed:
            raise PermanentBackendError(f"pkcs11 backend for {self.name} is closed")
        if os.getpid() != self._pid:
            raise PermanentBackendError(
                f"pkcs11 backend for {self.name} was opened before fork: open the key "
                "backend in this process"
            )

    def _ensure_connected(self) -> None:
        self._refuse_if_unusable()
        if not self._sessions.current():
            self._broken = True
        if self._broken:
            self._connect()
        held = self._key_lock.stem  # ~30 ns with the check below (``KeyLockHeld``)
        if held is not None and held != self._locks.stem:
            # Reconnected, under a key lock, to a token that is not the lock's.
            raise TransientBackendError(
                f"{self.name} is another token than when its key lock was taken "
                "(made again?): nothing changed; try again"
            )

    def _connect(self) -> None:
        # Before any lock, restart or observer report: a latched refusal tries nothing,
        # and a token found unusable a moment ago is not looked at again yet.
        self._pin_latch.check()
        if (
            self._unready is not None
            and time.monotonic() - self._unready[0] < ABSENT_RESCAN_SECONDS
        ):
            raise TransientBackendError(self._unready[1])
        op = "relogin" if self._logins else "login"
        with (
            observed(self._observer, op, ""),
            exclusive_lock(f"{self._locks.stem}.login.lock", LOCK_TIMEOUT_SECONDS),
            contextlib.ExitStack() as held,
        ):
            # Restart the module if nobody has since our last login, or if our last
            # reconnect failed (the token may be back: only a rescan shows it). Not
            # otherwise: a restart kills every session in the process, other backends' too.
            restart = self._logins > 0 and (
                self._sessions.generation == self._cryptoki.generation or self._failed_connects > 0
            )
            # Another process may have had this PIN file refused while we waited.
            self._pin_latch.check_shared()
            # Also before offering a PIN to a view of the token that may be out of date.
            key, latch, module = self._locks.key, self._pin_latch, self._cryptoki
            restart = restart or view_may_be_stale(module, key, latch, ABSENT_RESCAN_SECONDS)
            note_login_view(module, key, latch, restarting=restart)
            old_view = module.generation
            self._sessions.forget(self._sessions.pool.drain())
            self._epoch += 1
            last: p11.PKCS11Error = p11.NoSuchToken()
            for attempt in range(self.config.login_attempts):
                if attempt:
                    with waiting():  # a pause needs no turn to compute
                        time.sleep(LOGIN_RETRY_PAUSE_SECONDS * attempt)
                login: Any = None
                rescanned = restart or attempt > 0
                try:
                    if rescanned:
                        self._cryptoki.reinitialize()
                    library = self._cryptoki.library()
                    token = self._find_token(library)
                    if (
                        self._locks.follow(token, held, LOCK_TIMEOUT_SECONDS)
                        and module.generation > old_view
                    ):
                        # A view taken inside the token's own lock, as a shared refusal's
                        # must be (hsm.token_login): this login restarted anyway.
                        self._cryptoki.reinitialize()
                        token = self._find_token(self._cryptoki.library())
                    # Taken before the PIN is read: a source changed in between is at
                    # worst offered once more, never latched with a PIN not yet tried.
                    pin_identity = self._pin_latch.identity()
                    login = self._calls.open_logged_in(token, self.config.pin_source)
                    mechanisms = frozenset(token.slot.get_mechanisms())
                except p11.PKCS11Error as exc:
                    if login is not None:
                        # Logged in, then failed: this session would keep the process
                        # logged in, unknown to us, until the module restarts.
                        with contextlib.suppress(p11.PKCS11Error):
                            login.close()
                    fault = fault_of(exc)
                    if fault in (Fault.PIN, Fault.NO_USER_PIN):
                        # Whatever the token does next (its PIN reset, set at last), this
                        # module sees it only after a restart: the next login makes one.
                        for named in {key, self._locks.key}:  # as the login began, and now
                            self._cryptoki.mark_stale(named)
                    if fault is Fault.PIN:
                        source = self.config.pin_source.describe()
                        message = (
                            f"{self.name}: login refused ({ckr_name(exc)}); check the PIN "
                            f"from {source} (not tried again until {source} changes)"
                        )
                        # Shared only when a view taken inside this login refused it.
                        latch.latch(pin_identity, message, share=module.generation > old_view)
                        raise PermanentBackendError(message) from exc
                    last = exc
                    if rescanned and (
                        fault is Fault.NO_USER_PIN
                        or (isinstance(exc, p11.NoSuchToken) and self._logins)
                    ):
                        # Fresh rescan, the known token still absent or without a user PIN:
                        # fail fast; each call meanwhile would otherwise sleep and rescan.
                        break
                    continue
                self._pin_latch.accepted()
                self._token, self.mechanisms = token, mechanisms
                self._sessions.logged_in(login)
                self._broken = False
                self._logins += 1
                self._failed_connects = 0
                self._unready = None
                self._epoch += 1
                return
            self._failed_connects += 1
            if isinstance(last, p11.NoSuchToken):
                if self._logins:
                    self._unready = (time.monotonic(), f"{self.name} is not present")
                    raise TransientBackendError(self._unready[1]) from last
                raise TokenAbsent(
                    f"no {self.name} in PKCS#11 module {self.config.module}"
                ) from last
            error = translate(last, fault_of(last), "log in", self.name)
            if fault_of(last) is Fault.NO_USER_PIN:
                self._unready = (time.monotonic(), str(error))
            raise error from last

    def _find_token(self, library: Any) -> Any:
        serial = self.config.token_serial
        return library.get_token(
            token_label=self.config.token_label or None,
            token_serial=serial.encode() if serial else None,
        )

    def _session_for(self, lease: Lease[TokenSession]) -> TokenSession:
        """The lease's session if still valid (validated on borrow), else a new one."""
        item, pid, generation = lease.item, os.getpid(), self._sessions.generation
        if item is None or item.generation != generation or item.pid != pid:
            item = TokenSession(self._token.open(rw=True), generation, pid, self._epoch)
            lease.item = item
            lease.evicted = False
        if item.epoch != self._epoch:
            item.objects.clear()
            item.epoch = self._epoch
        return item

    def _settle(self, fault: Fault, session: TokenSession | None) -> Fault:
        """What an AMBIGUOUS fault, a dead object handle or a dead session means: ask
        the token.

        SoftHSM answers "no such object" (or a dead handle) alike for bad input, for an
        object destroyed elsewhere, for a vanished token directory and for a session
        whose login was dropped (private objects are then invisible). With no session
        (opening one failed) only the token's presence can be asked.
        """
        if not self._token_present():
            return Fault.TOKEN_LOST
        if fault is Fault.DEAD_SESSION:
            # That session cannot be asked; the login session says whether we are still
            # logged in (it is the one that keeps the process so).
            login = self._sessions.login
            if login is None or not self._calls.logged_in(login):
                return Fault.LOGGED_OUT
            return fault
        if session is not None and not self._calls.logged_in(session.session):
            return Fault.LOGGED_OUT
        return Fault.INPUT if fault is Fault.AMBIGUOUS else fault

    def _token_present(self) -> bool:
        if self._token is None:
            return False
        try:
            self._token.slot.get_token()
        except p11.PKCS11Error:
            return False
        return True
