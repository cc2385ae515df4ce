"""A PKCS#11 module as this process sees it: loaded once, initialized after fork, one lock.

Facts measured on the development machine (SoftHSM 2.6.1, python-pkcs11 0.10.1) that
shape this module:

- python-pkcs11 calls ``C_Initialize(NULL)``: no OS locking, so SoftHSM runs without its
  internal locks. Two threads each with its own session crashed or hung 5 runs of 5.
  Every call into the module therefore holds ``Cryptoki.lock``: one per module per
  process. (python-pkcs11 offers no way to pass CKF_OS_LOCKING_OK.)
- PKCS#11 state does not survive ``fork``. A child that inherited an initialized module
  (its pid differs from the pid that initialized) must ``C_Finalize``/``C_Initialize``
  before use; ``Cryptoki.library()`` does so on first use in each process. A backend
  opened before the fork is still refused in the child (``hsm.token_session``): its
  sessions and login are the parent's, not the child's. A process that forks workers
  checks it initialized nothing first (``check_not_initialized``).
- SoftHSM lists tokens and slots at ``C_Initialize``; a token removed and put back, or
  created after initialization, is seen only after re-initialization. Each
  re-initialization bumps ``generation``: sessions and handles from an older generation
  are dead, and their owners reconnect.
- SoftHSM also reads a token's PIN state (user PIN set or not, its value) only at
  ``C_Initialize``: a PIN set or reset by another process (``pkcs11-tool --init-pin``)
  is not seen before a re-initialization. ``initialized_ns`` says when this process's
  view was taken, ``mark_stale`` names tokens whose login state the view is known to
  hold out of date, and ``note_pin_file_seen`` what state of a PIN file a login saw
  before a later view was taken; ``hsm.token_login.view_may_be_stale`` reads them.

The registry of modules is process state by nature (the C library is process state), so
it lives at module level, reset in a child after fork. Errors raised are
``PermanentBackendError`` (the module cannot be loaded).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pkcs11
from pkcs11 import exceptions as p11

from hsm.errors import PermanentBackendError


class Cryptoki:
    """One PKCS#11 module in this process; hold ``lock`` around every call into it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        #: Bumped on every (re-)initialization; sessions from an older one are dead.
        self.generation = 0
        #: When the last (re-)initialization in this process began (``time.time_ns()``,
        #: taken before ``C_Initialize``: its view of the tokens is at least this new).
        self.initialized_ns = 0
        self._library: Any = None
        self._pid: int | None = None
        # Tokens (their link keys) whose login state this initialization may hold out of
        # date: a PIN was refused, or no user PIN was set, since. Emptied by the next one.
        self._stale: set[str] = set()
        # Per PIN file (keyed with its token): the change time a login last saw it with,
        # the generation then (every later initialization's view is newer than that
        # change), and when a login of it last restarted the module (time.monotonic()).
        self._pin_files: dict[str, tuple[int, int, float | None]] = {}

    def library(self) -> Any:
        """The initialized ``pkcs11.lib`` for this process (call with ``lock`` held)."""
        pid = os.getpid()
        if self._library is not None and self._pid == pid:
            return self._library
        # Inherited when this object was used before fork, or when this process is a fork
        # child at all: the parent may have loaded the module without this registry, and
        # one needless restart (~1 ms) is cheaper than a child on its parent's state.
        inherited = (self._pid is not None and self._pid != pid) or _forked
        started = time.time_ns()
        try:
            library = pkcs11.lib(self.path)
        except p11.PKCS11Error as exc:
            raise PermanentBackendError(f"cannot load PKCS#11 module {self.path}") from exc
        self._library, self._pid = library, pid
        if inherited:
            # The parent's initialization is not ours: its sessions, logins and locks
            # were copied by fork but belong to the parent's token state.
            started = time.time_ns()
            self._restart(library)
        self._initialized(started)
        return library

    def reinitialize(self) -> None:
        """``C_Finalize`` + ``C_Initialize``: rescan tokens, kill every session and login."""
        library = self.library()
        started = time.time_ns()
        self._restart(library)
        self._initialized(started)

    def view_since(self) -> int | None:
        """``initialized_ns`` if this process has initialized the module, else None."""
        if self._library is None or self._pid != os.getpid():
            return None
        return self.initialized_ns

    def mark_stale(self, token: str) -> None:
        """The login state this initialization holds for ``token`` may be out of date."""
        self._stale.add(token)

    def is_stale(self, token: str) -> bool:
        """Whether ``mark_stale`` named ``token`` since the last initialization."""
        return token in self._stale

    def note_pin_file_seen(self, key: str, changed_ns: int, *, restarting: bool) -> None:
        """A login saw PIN file ``key`` as changed at ``changed_ns``: every initialization
        from now on is newer than that change. ``restarting``: the login restarts now."""
        seen = self._pin_files.get(key)
        restarted = time.monotonic() if restarting else (seen[2] if seen else None)
        self._pin_files[key] = (changed_ns, self.generation, restarted)

    def pin_file_seen_before_init(self, key: str, changed_ns: int) -> bool:
        """Whether a login saw PIN file ``key`` as changed at ``changed_ns`` before the
        initialization that took the current view (a count, not a clock: exact)."""
        seen = self._pin_files.get(key)
        return seen is not None and seen[0] == changed_ns and seen[1] < self.generation

    def pin_file_restarted_within(self, key: str, seconds: float) -> bool:
        """Whether a login of PIN file ``key`` restarted the module ``seconds`` ago or less."""
        seen = self._pin_files.get(key)
        return seen is not None and seen[2] is not None and time.monotonic() - seen[2] <= seconds

    def _initialized(self, started: int) -> None:
        self.initialized_ns = started
        self._stale.clear()
        self.generation += 1

    def after_fork_in_child(self) -> None:
        """Replace the lock: a thread of the parent may have held it at fork time."""
        self.lock = threading.RLock()

    @staticmethod
    def _restart(library: Any) -> None:
        # Finalize fails when nothing is initialized (e.g. after a failed init): then
        # there is nothing to finalize, and the initialize below is what matters.
        with contextlib.suppress(p11.PKCS11Error):
            library.finalize()
        try:
            library.initialize()
        except p11.PKCS11Error as exc:
            raise PermanentBackendError("PKCS#11 module failed to initialize") from exc


_registry: dict[str, Cryptoki] = {}
_registry_lock = threading.Lock()
_forked = False
_fork_listeners: weakref.WeakSet[Any] = weakref.WeakSet()


def cryptoki(path: str) -> Cryptoki:
    """The process's ``Cryptoki`` for the module at ``path`` (one per real path)."""
    key = os.path.realpath(path)
    with _registry_lock:
        found = _registry.get(key)
        if found is None:
            found = _registry[key] = Cryptoki(path)
        return found


def loaded_modules() -> list[str]:
    """The PKCS#11 modules this process has initialized (their paths), for a check.

    "Initialized after fork, never before": a process that forks workers calls
    ``check_not_initialized`` first. A child does re-initialize what it inherited, but
    the parent's logins and sessions then share the token with it, and SoftHSM's
    file-backed state was copied mid-use.
    """
    pid = os.getpid()
    with _registry_lock:
        return sorted(
            module.path
            for module in _registry.values()
            if module._library is not None and module._pid == pid
        )


def check_not_initialized(before: str) -> None:
    """Raise ``PermanentBackendError`` if this process has initialized a PKCS#11 module.

    ``before``: what is about to happen (for the message), e.g. "fork a worker".
    """
    loaded = loaded_modules()
    if loaded:
        raise PermanentBackendError(
            f"PKCS#11 module {', '.join(loaded)} was initialized in this process before "
            f"it could {before}: open key backends only in the processes it forks"
        )


def on_fork_in_child(listener: Any) -> None:
    """Call ``listener.after_fork_in_child()`` in a child process after fork.

    Held weakly: registering does not keep a closed backend alive.
    """
    _fork_listeners.add(listener)


def _after_fork_in_child() -> None:
    global _registry_lock, _forked  # noqa: PLW0603 - process state, reset for the child
    _registry_lock = threading.Lock()  # the parent's may have been held at fork time
    _forked = True
    for module in _registry.values():
        module.after_fork_in_child()
    for listener in list(_fork_listeners):
        reset: Callable[[], None] = listener.after_fork_in_child
        reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
