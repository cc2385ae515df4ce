"""A token link's sessions, from lease to close, and the module lock its calls take.

``SessionKeeper`` holds what one ``TokenLink`` has open on its token: the pool of
working sessions (each a ``TokenSession``: a python-pkcs11 session, the module generation
and process it was opened in, and its object-handle cache) and the logged-in session.
It closes a session only in the process and module generation that opened it: a session
of an older generation died with the re-initialization, and one inherited over a fork
belongs to the parent. Whatever it cannot close now (the module held by a token call
that does not return) it closes when the first lease comes back.

The module lock is waited for at most the pool wait, by every call and by ``close``:
a token call that never returns (a network HSM gone quiet) holds it, and the others
then answer ``TransientBackendError`` instead of waiting behind it for ever. A taken
module lock is waited for inside the process's wait hook (``hsm.observer.waiting``,
``take_module``): a handler holding its server's turn to compute gives it up while it
waits behind a token call of a thread that holds no turn (a health probe, a background
refresh), rather than freezing every other call of its process for that long; and it
takes the lock only with its turn back, so the probe is not kept out meanwhile.

Errors raised: ``TransientBackendError``; ``TokenSession`` raises python-pkcs11's own,
which ``TokenLink.run`` translates.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from hsm.cryptoki import Cryptoki
from hsm.errors import TransientBackendError
from hsm.observer import waiting
from hsm.session_pool import Lease, SessionPool
from hsm.token_objects import search_template


def take_module(lock: threading.RLock, seconds: float | None) -> bool:
    """Acquire ``lock``, at once if free, else waiting (at most ``seconds``; None: for
    ever) inside the wait hook; whether it was acquired.

    Never held while the hook gives back what it took (the caller's turn to compute,
    which may take a while to come back): aside, the lock is only waited for, taken and
    let go at once; it is taken for the caller only once the turn is back, if it is still
    free then, else waited for aside again until ``seconds`` have passed. Held through
    the turn's queue, it kept a health probe (which holds no turn) out for that long.
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    while not lock.acquire(blocking=False):
        remaining = -1.0 if deadline is None else deadline - time.monotonic()
        if deadline is not None and remaining <= 0:
            return False
        with waiting():
            if not lock.acquire(timeout=remaining):
                return False
            lock.release()
    return True


@dataclass
class TokenSession:
    """A working session, the library generation it belongs to, and its object cache."""

    session: Any
    generation: int
    pid: int
    epoch: int
    objects: dict[tuple[ObjectClass, bytes], Any] = field(default_factory=dict)
    #: The error the current operation's single-part call raised, if any; cleared by
    #: ``TokenLink.run`` when the operation ends, so no error outlives its call here.
    ended: p11.PKCS11Error | None = None

    def find(self, object_class: ObjectClass, ck_id: bytes) -> Any:
        """The object of this class and CKA_ID, cached (a lookup costs ~0.25-0.7 ms).

        Private keys only among private objects (``hsm.token_objects.search_template``).
        Raises python-pkcs11's ``NoSuchKey`` or ``MultipleObjectsReturned``, as its
        ``get_key`` does, but only once the search has ended (see ``search``).
        """
        key = (object_class, ck_id)
        found = self.objects.get(key)
        if found is None:
            matches = self.search(search_template(object_class, ck_id))
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

    @contextlib.contextmanager
    def single_part(self) -> Iterator[None]:
        """Mark one single-part call (C_Sign, C_Decrypt, C_DeriveKey): errors end it.

        PKCS#11 ends an operation on any error of its single-part call but
        CKR_BUFFER_TOO_SMALL (never met: python-pkcs11 asks the size first), an Init that
        fails starts none, and C_DeriveKey keeps no state; python-pkcs11 0.10.1 releases
        its session lock on every CKR error of these. So after such an error the session
        is as idle as after a success, unless the call met an operation an earlier one
        left active (CKR_OPERATION_ACTIVE). Not for searches: a search that failed to
        start may leave python-pkcs11's session lock held.
        """
        try:
            yield
        except p11.PKCS11Error as exc:
            self.ended = exc
            raise

    def confirm(self, object_class: ObjectClass, ck_id: bytes) -> None:
        """Raise a PKCS#11 error unless the object is still on the token.

        ``find`` may answer from the cache without a token call; reading an attribute
        through the handle is one, and a handle whose object another process destroyed
        answers CKR_OBJECT_HANDLE_INVALID (``TokenLink.run`` settles both into
        ``KeyNotFound``).
        """
        self.find(object_class, ck_id).get_attributes((Attribute.ID,))

    def confirm_token(self) -> None:
        """Raise a PKCS#11 error unless the token still answers (C_GetTokenInfo).

        An empty search result is also what SoftHSM gives when its token directory is
        gone; callers confirm the token before believing "nothing there".
        """
        self.session.token.slot.get_token()


class SessionKeeper:
    """One link's working sessions and login session, and its bounded module lock."""

    def __init__(self, module: Cryptoki, name: str, size: int, wait_seconds: float) -> None:
        self.name = name
        self._cryptoki = module
        self._wait_seconds = wait_seconds
        self.pool: SessionPool[TokenSession] = SessionPool(size, wait_seconds, self._discard)
        #: The logged-in session: while it is open, the process stays logged in.
        self.login: Any = None
        # -1: never logged in; compared against the module's generation and os.getpid().
        self.generation = -1
        self.pid = -1
        # Sessions a close() behind a stuck token call could not close (see close).
        self._stranded: list[TokenSession] | None = None

    def current(self) -> bool:
        """True if the login was made in this process and this module generation."""
        return self.pid == os.getpid() and self.generation == self._cryptoki.generation

    def logged_in(self, login: Any) -> None:
        """Keep ``login`` as the login session, made in this process and generation."""
        self.login = login
        self.generation, self.pid = self._cryptoki.generation, os.getpid()

    @contextlib.contextmanager
    def module_lock(self, action: str) -> Iterator[None]:
        """The module lock, waited for at most the pool wait."""
        lock = self._cryptoki.lock
        if not take_module(lock, self._wait_seconds):
            raise TransientBackendError(
                f"{self.name} cannot {action} now: another call has held the PKCS#11 "
                f"module for more than {int(self._wait_seconds * 1000)} ms (token not "
                "answering, or the process overloaded)"
            )
        try:
            yield
        finally:
            lock.release()

    def retire(self, lease: Lease[TokenSession]) -> None:
        """Close the lease's session rather than give it back: its state is not known.

        After an error, an operation may still be active on it (a C_SignInit whose
        C_Sign never ran answers CKR_OPERATION_ACTIVE to every later C_SignInit), and
        python-pkcs11 may still hold the session's lock for a search that failed to start
        (another thread would wait for it for ever). Closing ends the first on the
        token, and the session object is not used again: the next run on the lease
        opens a new session. Costs a session and a key lookup, so ``TokenLink.run``
        spares a session whose single-part call the token refused as bad input (the
        token ended that call). Call with the module lock held.
        """
        item, lease.item = lease.item, None
        if item is not None and self._opened_here(item):
            with contextlib.suppress(p11.PKCS11Error):
                item.session.close()

    def forget(self, idle: list[TokenSession]) -> None:
        """Close ``idle`` and the login session if alive in this process; else drop them."""
        if self.current():
            # Close quietly: the sessions are being abandoned either way, and a token
            # that is already gone cannot close them.
            for item in idle:
                with contextlib.suppress(p11.PKCS11Error):
                    item.session.close()
            if self.login is not None:
                with contextlib.suppress(p11.PKCS11Error):
                    self.login.close()
        self.login = None

    def close(self) -> None:
        """Close every session, the login session last; take no session back.

        The process's login ends with its last session on the token, so closing the
        only backend on a token logs out, and closing one of two does not. Sessions out
        on a lease now (a call in another thread) are closed as their leases end.

        Waits for the module lock at most the pool wait, like every call: behind a token
        call that does not return, ``close`` returns without closing anything, and the
        idle sessions and the login session stay open (so the process stays logged
        in). The first lease of this link to come back afterwards closes them with its
        own; if none does (the stuck call is another link's, or never returns), they
        end with the process.
        """
        # Closed below, or by the first lease to come back if the module stays held.
        self._stranded = self.pool.close()
        lock = self._cryptoki.lock
        if not take_module(lock, self._wait_seconds):
            return
        try:
            stranded, self._stranded = self._stranded, None
            self.forget(stranded or [])
        finally:
            lock.release()

    def after_fork_in_child(self) -> None:
        """The parent's sessions are not ours: forget them without closing any."""
        self.pool.after_fork_in_child()
        self._stranded = None
        self.login = None

    def _discard(self, item: TokenSession) -> None:
        """Close a session given back after ``close`` (nobody will lease it again), and
        those ``close`` had to leave open."""
        lock = self._cryptoki.lock
        if not take_module(lock, self._wait_seconds):
            return  # the module is stuck: the session ends with the process
        try:
            if self._opened_here(item):
                with contextlib.suppress(p11.PKCS11Error):
                    item.session.close()
            stranded, self._stranded = self._stranded, None
            if stranded is not None:
                self.forget(stranded)
        finally:
            lock.release()

    def _opened_here(self, item: TokenSession) -> bool:
        # Else a session the module has already forgotten (re-initialized since), or
        # the parent's after a fork.
        return item.pid == os.getpid() and item.generation == self._cryptoki.generation
