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
   away (``hsm.token_connect``: re-initialize, find the token, log in under the token's
   login lock file, with bounded attempts; a refused PIN is not offered again). A login
   lock file another process holds is waited for with the module lock let go, aside
   (``hsm.observer.waiting``), holding neither the module lock nor a login lock file
   (the call keeps its pool lease and, under ``admin_lock``, the token's key lock, which
   no login takes): held there, the module lock would be kept from a health probe (which
   holds no turn to compute) while the wait queues for the turn back. The module lock is
   then taken again and the link looked at anew;
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
without a restart (looked at again at most once per ``ABSENT_RESCAN_SECONDS``).

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

from hsm.ckr import Fault, fault_of, translate
from hsm.cryptoki import cryptoki, on_fork_in_child
from hsm.errors import (
    DecapsulationError,
    KeyBackendError,
    KeyNotFound,
    PermanentBackendError,
    TransientBackendError,
)
from hsm.filelock import LockTaken, exclusive_lock, refusing_waits, wait_until_free
from hsm.observer import Observer
from hsm.session_keeper import SessionKeeper, TokenSession, take_module
from hsm.session_pool import Lease, PoolStats
from hsm.token_config import (
    DEFAULT_LOGIN_ATTEMPTS,
    DEFAULT_POOL_SIZE,
    DEFAULT_POOL_WAIT_SECONDS,
    Pkcs11Config,
)
from hsm.token_connect import ABSENT_RESCAN_SECONDS, LOCK_TIMEOUT_SECONDS, TokenConnect

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

#: Times ``admin_lock`` takes the key lock again when the token it names changed while
#: it waited (a reconnect found another token under the label): each such change is an
#: operator re-initializing the token, so a third in one wait means something is wrong.
KEY_LOCK_ATTEMPTS = 3


class _LoginLockTaken(Exception):
    """A login lock file held by another process, met by ``TokenLink.run`` at ``attempt``:
    waited for with the module lock let go, then the run resumes at that attempt."""

    def __init__(self, path: str, attempt: int) -> None:
        super().__init__(f"lock {path} is held by another process")
        self.path, self.attempt = path, attempt


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
        self._cryptoki = cryptoki(config.module)
        self._sessions = SessionKeeper(
            self._cryptoki, self.name, config.pool_size, config.pool_wait_seconds
        )
        self._login = TokenConnect(config, self.name, self._cryptoki, self._sessions, observer)
        self._calls, self._locks = self._login.calls, self._login.locks
        self._token: Any = None
        self._broken = True
        self._closed = False
        self._epoch = 0
        self._pid = os.getpid()
        self.mechanisms: frozenset[Mechanism] = frozenset()
        self._key_lock = KeyLockHeld()
        on_fork_in_child(self)
        self._holding_module(None, self._ensure_connected)

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
        attempts, first, deadline = (2 if retry else 1), 0, None
        with self._sessions.pool.lease() as lease:
            while True:
                try:
                    with self._sessions.module_lock(action):
                        return self._attempts(
                            lease, operation, action, range(first, attempts), subject, peer_input
                        )
                except _LoginLockTaken as taken:
                    first, deadline = taken.attempt, self._wait_login_lock(taken.path, deadline)

    def _attempts(
        self,
        lease: Lease[TokenSession],
        operation: Callable[[TokenSession], T],
        action: str,
        attempts: range,
        subject: str,
        peer_input: bool,
    ) -> T:
        """``run``'s ``attempts`` (some may be done: a login lock wait resumes them),
        module lock held."""
        for attempt in attempts:
            try:
                self._ensure_connected()
            except LockTaken as taken:
                raise _LoginLockTaken(taken.path, attempt) from None
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
                again = attempt + 1 < attempts.stop
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
            self._holding_module("take its key lock", self._reach)
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
        self._holding_module("report its health", self._probe)

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

    def _holding_module(self, action: str | None, then: Callable[[], None]) -> None:
        """``then()`` with the module lock held (waited for as long as it takes if
        ``action`` is None: the constructor's); a login lock file it found held by another
        process is waited for with the lock let go, and ``then`` called again."""
        deadline: float | None = None
        while True:
            try:
                with self._whole_module() if action is None else self._sessions.module_lock(action):
                    then()
                    return
            except LockTaken as taken:
                deadline = self._wait_login_lock(taken.path, deadline)

    @contextlib.contextmanager
    def _whole_module(self) -> Iterator[None]:
        """The module lock, however long (the constructor's: nothing else to answer)."""
        take_module(self._cryptoki.lock, None)
        try:
            yield
        finally:
            self._cryptoki.lock.release()

    def _wait_login_lock(self, path: str, deadline: float | None) -> float:
        """Wait until another process's login lock at ``path`` is free (not taking it),
        aside, holding neither the module lock nor a login lock file (the module
        docstring says what it keeps); the deadline of one call's such waits, set at its
        first."""
        if deadline is None:
            deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        wait_until_free(path, deadline, LOCK_TIMEOUT_SECONDS)
        return deadline

    def _reach(self) -> None:
        """Connect to the token the link reaches now, a token gone counting as not
        connected (``admin_lock``)."""
        self._broken = self._broken or not self._token_present()
        self._ensure_connected()

    def _probe(self) -> None:
        """``check_health``'s look at the token, module lock held."""
        self._ensure_connected()
        if not self._token_present():
            self._broken = True
            raise TransientBackendError(f"{self.name} is not present")

    def _ensure_connected(self) -> None:
        """Connect if needed (module lock held). ``LockTaken`` if the login lock file is
        held by another process: the caller lets the module lock go, waits, tries again."""
        self._refuse_if_unusable()
        if not self._sessions.current():
            self._broken = True
        if self._broken:
            with refusing_waits():
                self._token, self.mechanisms = self._login.connect(self.invalidate_objects)
            self._broken = False
        held = self._key_lock.stem  # ~30 ns with the check below (``KeyLockHeld``)
        if held is not None and held != self._locks.stem:
            # Reconnected, under a key lock, to a token that is not the lock's.
            raise TransientBackendError(
                f"{self.name} is another token than when its key lock was taken "
                "(made again?): nothing changed; try again"
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
