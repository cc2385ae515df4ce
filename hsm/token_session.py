"""The link to one token: login, session pool, object-handle cache, and recovery.

``TokenLink`` keeps one long-lived logged-in session per process (PKCS#11 login state
belongs to the process, not to a session) plus a bounded pool of working sessions. Every
token call goes through ``TokenLink.run``, which:

1. leases a pool slot (bounded wait: ``TransientBackendError`` "session pool exhausted");
2. takes the module lock (token calls are serialized per process, see ``hsm.cryptoki``),
   waiting at most as long as for the pool: a token call that never returns (a network
   HSM gone quiet) holds it, and callers and ``check_health`` then answer
   ``TransientBackendError`` instead of waiting behind it for ever;
3. reconnects if needed: after a fork, after anyone re-initialized the module, after the
   token went away. Reconnecting = re-initialize, find the token by label or serial
   (never slot number), log in, under an exclusive file lock shared by every process
   using that token, with bounded attempts. A wrong PIN is never retried, and once
   refused it is not offered again until the PIN source changes (a PIN file: by no
   process of this host; ``hsm.token_login``);
4. validates the leased session (same process, same module generation) or opens one;
5. runs the operation, and on a CKR error decides with ``hsm.ckr`` whether to reconnect
   and retry once (token lost, logged out), to drop the object caches and retry once (a
   cached handle whose object was destroyed elsewhere), or to translate and raise;
6. gives the session back to the pool only if the operation returned or raised one of
   setpay's own errors. After any other error its state is not known (an operation may
   still be active on it), so it is closed and the next call opens a new one.

When the token disappears, operations and ``check_health`` raise
``TransientBackendError``; once it is back, the next call reconnects and logs in again,
without a restart. While it is away, the module is restarted to look for it at most
once per ``ABSENT_RESCAN_SECONDS``: a restart logs out every backend of the process.
Logins and re-logins are reported to the observer ("login", "relogin").

Known limit: if two backends in one process use the same token, the second finds the
process already logged in (CKR_USER_ALREADY_LOGGED_IN, taken as success) and its PIN is
not checked by the token. Closing a backend closes its own sessions and logs nobody out
explicitly: the token ends the process's login when its last session there closes.

Errors raised: ``TransientBackendError``, ``PermanentBackendError``, ``KeyNotFound`` and
the translations of ``hsm.ckr``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from hsm.ckr import Fault, ckr_name, fault_of, translate
from hsm.cryptoki import cryptoki, on_fork_in_child
from hsm.errors import (
    DecapsulationError,
    KeyBackendError,
    KeyNotFound,
    PermanentBackendError,
    TransientBackendError,
)
from hsm.filelock import exclusive_lock, lock_directory
from hsm.observer import Observer, observed
from hsm.pinsource import PinSource
from hsm.session_pool import Lease, PoolStats, SessionPool
from hsm.token_login import LoginCalls, PinLatch

T = TypeVar("T")

#: Working sessions per process. Token calls are serialized per process anyway (see
#: hsm.cryptoki), so more sessions add no throughput; 4 lets a few threads queue on the
#: module lock instead of on the pool, and keeps well under any token's session limit.
DEFAULT_POOL_SIZE = 4

#: How long a thread waits for a pool session, and then for the module lock, before
#: TransientBackendError. One signature takes ~0.1 ms on SoftHSM and an RSA-3072 key
#: generation ~1 s; 5 s means the token is stuck or the process is overloaded, and the
#: caller should shed load.
DEFAULT_POOL_WAIT_SECONDS = 5.0

#: Login attempts (each after a re-initialization) before giving up. Concurrent logins
#: are serialized by a file lock, so a second attempt covers a token file caught mid-
#: rewrite by a process that does not use the lock; three is plenty for that.
DEFAULT_LOGIN_ATTEMPTS = 3

#: Pause before login attempt n is n times this: short next to a login (~2-20 ms).
LOGIN_RETRY_PAUSE_SECONDS = 0.02

#: Longest wait for another process's login (or key generation) to finish.
LOCK_TIMEOUT_SECONDS = 30.0

#: While a known token is absent, the shortest time between two module restarts made to
#: look for it. A restart (C_Finalize + C_Initialize) kills every session of the process,
#: so every other token's backend must log in again; a health watcher polling an absent
#: token would otherwise cause that on each poll. Calls in between get the cached
#: "not present" at no cost, and a token that is put back is used within this time.
ABSENT_RESCAN_SECONDS = 1.0


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the token is and how to reach it; validated at construction."""

    module: str
    pin_source: PinSource
    token_label: str | None = None
    token_serial: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    pool_wait_seconds: float = DEFAULT_POOL_WAIT_SECONDS
    login_attempts: int = DEFAULT_LOGIN_ATTEMPTS
    #: Directory of the inter-process lock files, only this user's (default: a per-user
    #: directory in the system temp directory; see ``hsm.filelock.lock_directory``).
    lock_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.token_label and not self.token_serial:
            raise PermanentBackendError("pkcs11 backend needs a token label or serial")
        if self.pool_size < 1 or self.pool_wait_seconds <= 0 or self.login_attempts < 1:
            raise PermanentBackendError("pkcs11 pool size, wait and login attempts must be > 0")

    def with_pool(self, size: int | None = None, wait_seconds: float | None = None) -> Pkcs11Config:
        """A copy with other pool settings."""
        return dataclasses.replace(
            self,
            pool_size=self.pool_size if size is None else size,
            pool_wait_seconds=self.pool_wait_seconds if wait_seconds is None else wait_seconds,
        )

    def token_name(self) -> str:
        """The token as named in messages: by label, else by serial."""
        if self.token_label:
            return f"token {self.token_label!r}"
        return f"token with serial {self.token_serial!r}"


@dataclass
class TokenSession:
    """A working session, the library generation it belongs to, and its object cache."""

    session: Any
    generation: int
    pid: int
    epoch: int
    objects: dict[tuple[ObjectClass, bytes], Any] = field(default_factory=dict)

    def find(self, object_class: ObjectClass, ck_id: bytes) -> Any:
        """The object of this class and CKA_ID, cached (a lookup costs ~0.25-0.7 ms).

        Raises python-pkcs11's ``NoSuchKey`` or ``MultipleObjectsReturned``, as its
        ``get_key`` does, but only once the search has ended (see ``search``).
        """
        key = (object_class, ck_id)
        found = self.objects.get(key)
        if found is None:
            matches = self.search({Attribute.CLASS: object_class, Attribute.ID: ck_id})
            if not matches:
                raise p11.NoSuchKey(f"no {object_class.name} object with CKA_ID {ck_id.hex()}")
            if len(matches) > 1:
                raise p11.MultipleObjectsReturned(
                    f"{len(matches)} {object_class.name} objects with CKA_ID {ck_id.hex()}"
                )
            found = self.objects[key] = matches[0]
        return found

    def search(self, template: dict[Attribute, Any]) -> list[Any]:
        """Every object matching ``template``, the search ended before anything else.

        Not python-pkcs11's ``get_key``, and no token call while iterating
        ``get_objects``: a search abandoned or interrupted half-way (``get_key`` stops at
        a second match and raises) stays active on the session, with python-pkcs11's
        per-session lock held by the suspended generator, until that generator is
        garbage-collected. Meanwhile the session answers CKR_OPERATION_ACTIVE to the
        next search in this thread and blocks another thread for ever, holding the
        module lock; the eventual clean-up is a token call made without that lock.
        """
        return list(self.session.get_objects(template))

    def confirm_token(self) -> None:
        """Raise a PKCS#11 error unless the token still answers (C_GetTokenInfo).

        An empty search result is also what SoftHSM gives when its token directory is
        gone; callers confirm the token before believing "nothing there".
        """
        self.session.token.slot.get_token()


class TokenLink:
    """One backend's connection to its token (see the module docstring)."""

    def __init__(self, config: Pkcs11Config, observer: Observer | None = None) -> None:
        self.config = config
        self.name = config.token_name()
        self._observer = observer
        self._cryptoki = cryptoki(config.module)
        self._calls = LoginCalls(self._cryptoki.path)
        self._pool: SessionPool[TokenSession] = SessionPool(
            config.pool_size, config.pool_wait_seconds, self._discard
        )
        self._token: Any = None
        self._login: Any = None
        # -1: no connection yet; compared against the module's generation and os.getpid().
        self._generation = -1
        self._pid = -1
        self._broken = True
        self._closed = False
        # Sessions a close() behind a stuck token call could not close (see close).
        self._stranded: list[TokenSession] | None = None
        self._logins = 0
        self._failed_connects = 0
        # When our last rescan found the known token absent (time.monotonic()), or None.
        self._absent_at: float | None = None
        self._epoch = 0
        self.mechanisms: frozenset[Mechanism] = frozenset()
        lock_key = "\0".join(
            (os.path.realpath(config.module), config.token_label or "", config.token_serial or "")
        )
        self._lock_stem = os.path.join(
            lock_directory(config.lock_dir),
            f"setpay-pkcs11-{hashlib.sha256(lock_key.encode()).hexdigest()[:16]}",
        )
        self._pin_latch = PinLatch(config.pin_source, self._lock_stem)
        on_fork_in_child(self)
        with self._cryptoki.lock:
            self._ensure_connected()

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
        self._refuse_if_closed()
        with self._pool.lease() as lease, self._module_lock(action):
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
                    fault = fault_of(exc)
                    ambiguous = fault is Fault.AMBIGUOUS
                    if fault in (Fault.AMBIGUOUS, Fault.STALE_OBJECT):
                        fault = self._settle(fault, session)
                    again = attempt + 1 < attempts
                    if fault in (Fault.TOKEN_LOST, Fault.LOGGED_OUT):
                        lease.evict()  # dead anyway once the module restarts to reconnect
                        self._broken = True
                        if again:
                            continue
                    else:
                        self._retire(lease)
                    passing = ambiguous and fault is Fault.INPUT and not peer_input
                    if passing and not isinstance(exc, p11.NoSuchKey) and again:
                        continue
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
                    self._retire(lease)
                    raise
            raise TransientBackendError(f"{self.name} cannot {action} now")  # unreachable

    @contextlib.contextmanager
    def admin_lock(self) -> Iterator[None]:
        """Exclusive across processes while key versions are claimed or destroyed."""
        with exclusive_lock(f"{self._lock_stem}.keys.lock", LOCK_TIMEOUT_SECONDS):
            yield

    @property
    def pool_stats(self) -> PoolStats:
        """The session pool's size, leases out and summed waits (for metrics)."""
        return self._pool.stats

    @property
    def epoch(self) -> int:
        """Changes whenever cached object handles may be stale."""
        return self._epoch

    def invalidate_objects(self) -> None:
        """Drop every session's object cache (after objects were destroyed)."""
        self._epoch += 1

    def check_health(self) -> None:
        """Raise ``TransientBackendError`` unless the token is there and we are logged in."""
        self._refuse_if_closed()
        with self._module_lock("report its health"):
            self._ensure_connected()
            if not self._token_present():
                self._broken = True
                raise TransientBackendError(f"{self.name} is not present")

    def close(self) -> None:
        """Close every session; later calls raise ``PermanentBackendError``.

        The process's login ends with its last session on the token, so closing the
        only backend on a token logs out, and closing one of two does not. Sessions out
        on a lease now (a call in another thread) are closed as their leases end.

        Waits for the module lock at most ``pool_wait_seconds``, like every call: behind
        a token call that does not return, ``close`` returns without closing anything,
        and the idle sessions and the login session stay open (so the process stays
        logged in). The first lease of this backend to come back afterwards closes them
        with its own; if none does (the stuck call is another backend's, or never
        returns), they end with the process.
        """
        self._closed = True  # checked before any new call leases or waits
        # Closed below, or by the first lease to come back if the module stays held.
        self._stranded = self._pool.close()
        lock = self._cryptoki.lock
        if not lock.acquire(timeout=self.config.pool_wait_seconds):
            return
        try:
            stranded, self._stranded = self._stranded, None
            self._forget_sessions(stranded or [])
        finally:
            lock.release()

    def after_fork_in_child(self) -> None:
        """The parent's sessions are not ours: forget them (the next call reconnects)."""
        self._pool.after_fork_in_child()
        self._stranded = None
        self._login = None
        self._token = None
        self._broken = True
        self._absent_at = None  # this process has not looked for the token yet

    def _refuse_if_closed(self) -> None:
        # Also before waiting for the pool or the module lock: a closed backend says so at
        # once, even while a token call that does not return holds the module.
        if self._closed:
            raise PermanentBackendError(f"pkcs11 backend for {self.name} is closed")

    def _ensure_connected(self) -> None:
        self._refuse_if_closed()
        if self._pid != os.getpid() or self._generation != self._cryptoki.generation:
            self._broken = True
        if self._broken:
            self._connect()

    def _connect(self) -> None:
        # Before any lock, restart or observer report: a latched refusal tries nothing,
        # and a token found absent a moment ago is not looked for again yet.
        self._pin_latch.check()
        if (
            self._absent_at is not None
            and time.monotonic() - self._absent_at < ABSENT_RESCAN_SECONDS
        ):
            raise TransientBackendError(f"{self.name} is not present")
        op = "relogin" if self._logins else "login"
        with (
            observed(self._observer, op, ""),
            exclusive_lock(f"{self._lock_stem}.login.lock", LOCK_TIMEOUT_SECONDS),
        ):
            # Restart the module if nobody has since our last login, or if our last
            # reconnect failed (the token may be back: only a rescan shows it). Not
            # otherwise: a restart kills every session in the process, other backends' too.
            restart = self._logins > 0 and (
                self._generation == self._cryptoki.generation or self._failed_connects > 0
            )
            # Another process may have had this PIN file refused while we waited.
            self._pin_latch.check_shared()
            self._forget_sessions(self._pool.drain())
            last: p11.PKCS11Error = p11.NoSuchToken()
            for attempt in range(self.config.login_attempts):
                if attempt:
                    time.sleep(LOGIN_RETRY_PAUSE_SECONDS * attempt)
                login: Any = None
                try:
                    if restart or attempt:
                        self._cryptoki.reinitialize()
                    library = self._cryptoki.library()
                    token = self._find_token(library)
                    # Taken before the PIN is read: a source changed in between is at
                    # worst offered once more, never latched with a PIN not yet tried.
                    pin_identity = self._pin_latch.identity()
                    login = self._log_in(token)
                    mechanisms = frozenset(token.slot.get_mechanisms())
                except p11.PKCS11Error as exc:
                    if login is not None:
                        # Logged in, then failed: this session would keep the process
                        # logged in, unknown to us, until the module restarts.
                        with contextlib.suppress(p11.PKCS11Error):
                            login.close()
                    if fault_of(exc) is Fault.PIN:
                        source = self.config.pin_source.describe()
                        message = (
                            f"{self.name}: login refused ({ckr_name(exc)}); check the PIN "
                            f"from {source} (not tried again until {source} changes)"
                        )
                        self._pin_latch.latch(pin_identity, message)
                        # The token answered: no module restart is needed to try again.
                        self._failed_connects = 0
                        raise PermanentBackendError(message) from exc
                    last = exc
                    if isinstance(exc, p11.NoSuchToken) and self._logins and (restart or attempt):
                        # Known token, fresh rescan, still absent: it is gone. Fail fast;
                        # every call while it is away would otherwise sleep and rescan.
                        break
                    continue
                self._pin_latch.accepted()
                self._token, self._login, self.mechanisms = token, login, mechanisms
                self._generation, self._pid = self._cryptoki.generation, os.getpid()
                self._broken = False
                self._logins += 1
                self._failed_connects = 0
                self._absent_at = None
                self._epoch += 1
                return
            self._failed_connects += 1
            if isinstance(last, p11.NoSuchToken):
                if self._logins:
                    self._absent_at = time.monotonic()
                    raise TransientBackendError(f"{self.name} is not present") from last
                raise PermanentBackendError(
                    f"no {self.name} in PKCS#11 module {self.config.module}"
                ) from last
            raise translate(last, fault_of(last), "log in", self.name) from last

    def _find_token(self, library: Any) -> Any:
        serial = self.config.token_serial
        return library.get_token(
            token_label=self.config.token_label or None,
            token_serial=serial.encode() if serial else None,
        )

    def _log_in(self, token: Any) -> Any:
        """A new session, logged in; closed again if the login fails."""
        pin = self.config.pin_source.read()
        # Not Token.open(user_pin=...): it leaves its session open when C_Login fails.
        session = token.open(rw=True)
        try:
            self._calls.log_in(session, pin)
        except BaseException:
            with contextlib.suppress(p11.PKCS11Error):
                session.close()
            raise
        return session

    def _session_for(self, lease: Lease[TokenSession]) -> TokenSession:
        """The lease's session if still valid (validated on borrow), else a new one."""
        item, pid = lease.item, os.getpid()
        if item is None or item.generation != self._generation or item.pid != pid:
            item = TokenSession(self._token.open(rw=True), self._generation, pid, self._epoch)
            lease.item = item
            lease.evicted = False
        if item.epoch != self._epoch:
            item.objects.clear()
            item.epoch = self._epoch
        return item

    def _settle(self, fault: Fault, session: TokenSession | None) -> Fault:
        """What an AMBIGUOUS fault or a dead object handle means: ask the token.

        SoftHSM answers "no such object" (or a dead handle) alike for bad input, for an
        object destroyed elsewhere, for a vanished token directory and for a session
        whose login was dropped (private objects are then invisible). With no session
        (opening one failed) only the token's presence can be asked.
        """
        if not self._token_present():
            return Fault.TOKEN_LOST
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

    @contextlib.contextmanager
    def _module_lock(self, action: str) -> Iterator[None]:
        """The module lock, waited for at most ``pool_wait_seconds``."""
        wait = self.config.pool_wait_seconds
        lock = self._cryptoki.lock
        if not lock.acquire(timeout=wait):
            raise TransientBackendError(
                f"{self.name} cannot {action} now: another call has held the PKCS#11 "
                f"module for more than {int(wait * 1000)} ms (token not answering, or "
                "the process overloaded)"
            )
        try:
            yield
        finally:
            lock.release()

    def _discard(self, item: TokenSession) -> None:
        """Close a session given back after ``close`` (nobody will lease it again), and
        those ``close`` had to leave open."""
        lock = self._cryptoki.lock
        if not lock.acquire(timeout=self.config.pool_wait_seconds):
            return  # the module is stuck: the session ends with the process
        try:
            if item.pid == os.getpid() and item.generation == self._cryptoki.generation:
                with contextlib.suppress(p11.PKCS11Error):
                    item.session.close()
            stranded, self._stranded = self._stranded, None
            if stranded is not None:
                self._forget_sessions(stranded)
        finally:
            lock.release()

    def _retire(self, lease: Lease[TokenSession]) -> None:
        """Close the lease's session rather than give it back: its state is not known.

        After an error, an operation may still be active on it (a C_SignInit whose
        C_Sign never ran answers CKR_OPERATION_ACTIVE to every later C_SignInit), and
        python-pkcs11 may still hold the session's lock for a search that failed to start
        (another thread would wait for it for ever). Closing ends the first on the
        token, and the session object is not used again: the next run on the lease
        opens a new session. Costs a session and a key lookup per error. Call with the
        module lock held.
        """
        item, lease.item = lease.item, None
        if item is None or item.pid != os.getpid() or item.generation != self._cryptoki.generation:
            return  # nothing to close, or a session the module has already forgotten
        with contextlib.suppress(p11.PKCS11Error):
            item.session.close()

    def _forget_sessions(self, idle: list[TokenSession]) -> None:
        """Close ``idle`` and the login session if alive in this process; else drop them."""
        alive = self._pid == os.getpid() and self._generation == self._cryptoki.generation
        if alive:
            # Close quietly: the sessions are being abandoned either way, and a token
            # that is already gone cannot close them.
            for item in idle:
                with contextlib.suppress(p11.PKCS11Error):
                    item.session.close()
            if self._login is not None:
                with contextlib.suppress(p11.PKCS11Error):
                    self._login.close()
        self._login = None
        self._epoch += 1
