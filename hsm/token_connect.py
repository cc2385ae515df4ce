"""How a token link (re)connects: re-initialize, find the token, log in, with bounded tries.

``TokenConnect.connect`` is step 3 of ``hsm.token_session``'s ``TokenLink.run``, called
with the module lock held. Reconnecting = re-initialize, find the token by label or serial
(never slot number), log in, under an exclusive file lock shared by every process using
that token (named after the token, however the URI names it: ``hsm.token_login``'s "Lock
names"), with bounded attempts. A wrong PIN is never retried, and once refused it is not
offered again until the PIN source changes (a PIN file: by no process of this host; an
``env:`` PIN: by no process of this bank start, until the bank is started again;
``hsm.pin_latch``). A login re-initializes first when the module's view of the token's
PIN state may be out of date (``hsm.token_login.view_may_be_stale``); a refusal by a view
older than the login stays in its backend, not shared.

While the token is away, or has no user PIN yet (re-initialized, its user PIN still to be
set), or the key URI names more than one token (two with its label), the module is
restarted to look again at most once per ``ABSENT_RESCAN_SECONDS``: a restart logs out
every backend of the process. Logins and re-logins are reported to the observer
("login", "relogin").

Nothing here waits aside (``hsm.observer.waiting``) for anything: the module lock is held
throughout, and a health probe, which holds no turn to compute, needs it. A login lock
file held by another process is not waited for here: inside ``hsm.filelock``'s
``refusing_waits`` it raises ``LockTaken``, and the link waits for it with the module
lock let go (``TokenLink``). The pause between two attempts is a plain sleep (tens of
ms): given up aside, it would have queued for the turn back with the module and the
login lock file held.

Errors raised: ``TransientBackendError``, ``PermanentBackendError`` (a refused PIN, a URI
that matches more than one token), ``TokenAbsent``, the translations of ``hsm.ckr``, and
``hsm.filelock.LockTaken``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from pkcs11 import Mechanism
from pkcs11 import exceptions as p11

from hsm.ckr import Fault, ckr_name, fault_of, translate
from hsm.cryptoki import Cryptoki
from hsm.errors import KeyBackendError, PermanentBackendError, TokenAbsent, TransientBackendError
from hsm.filelock import exclusive_lock, lock_directory
from hsm.observer import Observer, observed
from hsm.pin_latch import PinLatch
from hsm.pinsource import bank_start
from hsm.session_keeper import SessionKeeper
from hsm.token_config import Pkcs11Config
from hsm.token_login import LoginCalls, TokenLocks, note_login_view, view_may_be_stale

#: Pause before login attempt n is n times this: short next to a login (~2-20 ms).
LOGIN_RETRY_PAUSE_SECONDS = 0.02

#: Longest wait for another process's login (or key generation) to finish.
LOCK_TIMEOUT_SECONDS = 30.0

#: While a known token is absent (or has no user PIN yet), the shortest time between two
#: module restarts made to look at it again. A restart (C_Finalize + C_Initialize) kills
#: every session of the process, so every other token's backend must log in again; a
#: health watcher polling an absent token would otherwise cause that on each poll. Calls
#: in between get the cached error at no cost, and a token that is put back (or given
#: its user PIN) is used within this time. Also the shortest time between two restarts
#: made for changes of one PIN file: a file whose times move at every look (rewritten by
#: an agent, a secret store reporting "now") would otherwise restart it at every login.
ABSENT_RESCAN_SECONDS = 1.0


class TokenConnect:
    """One link's logins: its PIN latch, lock names, and what its last tries found."""

    def __init__(
        self,
        config: Pkcs11Config,
        name: str,
        module: Cryptoki,
        sessions: SessionKeeper,
        observer: Observer | None,
    ) -> None:
        self.config = config
        self.name = name
        self._cryptoki = module
        self._sessions = sessions
        self._observer = observer
        self.calls = LoginCalls(module.path)
        self.latch = PinLatch(config.pin_source)
        where = (config.module, lock_directory(config.lock_dir))
        self.locks = TokenLocks(*where, self.latch, config.token_label, config.token_serial)
        self.logins = 0
        self._failed_connects = 0
        # When our last rescan found the token not usable yet (time.monotonic()), and the
        # error it gave: absent (a known token), without a user PIN, or not the only one
        # the URI names (its kind and message: raised anew, never one instance again, whose
        # traceback would grow at each raise). None otherwise.
        self._unready: tuple[float, type[KeyBackendError], str] | None = None

    def connect(self, invalidate: Callable[[], None]) -> tuple[Any, frozenset[Mechanism]]:
        """Log in (module lock held): the token and its mechanisms. ``invalidate`` drops
        the link's object caches, once the sessions are gone and once logged in."""
        # Before any lock, restart or observer report: a latched refusal tries nothing,
        # and a token found unusable a moment ago is not looked at again yet.
        self.latch.check()
        if (
            self._unready is not None
            and time.monotonic() - self._unready[0] < ABSENT_RESCAN_SECONDS
        ):
            raise self._unready[1](self._unready[2])
        op = "relogin" if self.logins else "login"
        with (
            observed(self._observer, op, ""),
            exclusive_lock(f"{self.locks.stem}.login.lock", LOCK_TIMEOUT_SECONDS),
            contextlib.ExitStack() as held,
        ):
            # Restart the module if nobody has since our last login, or if our last
            # reconnect failed (the token may be back: only a rescan shows it). Not
            # otherwise: a restart kills every session in the process, other backends' too.
            restart = self.logins > 0 and (
                self._sessions.generation == self._cryptoki.generation or self._failed_connects > 0
            )
            # Another process may have had this PIN source refused while we waited.
            self.latch.check_shared()
            # Also before offering a PIN to a view of the token that may be out of date.
            key, latch, module = self.locks.key, self.latch, self._cryptoki
            restart = restart or view_may_be_stale(module, key, latch, ABSENT_RESCAN_SECONDS)
            note_login_view(module, key, latch, restarting=restart)
            old_view = module.generation
            self._sessions.forget(self._sessions.pool.drain())
            invalidate()
            last: p11.PKCS11Error = p11.NoSuchToken()
            for attempt in range(self.config.login_attempts):
                if attempt:
                    # A plain sleep, turn and all (see the module docstring).
                    time.sleep(LOGIN_RETRY_PAUSE_SECONDS * attempt)
                login: Any = None
                rescanned = restart or attempt > 0
                try:
                    if rescanned:
                        self._cryptoki.reinitialize()
                    token = self._find_token(self._cryptoki.library())
                    if (
                        self.locks.follow(token, held, LOCK_TIMEOUT_SECONDS)
                        and module.generation > old_view
                    ):
                        # A view taken inside the token's own lock, as a shared refusal's
                        # must be (hsm.token_login): this login restarted anyway.
                        self._cryptoki.reinitialize()
                        token = self._find_token(self._cryptoki.library())
                    # Taken before the PIN is read: a source changed in between is at
                    # worst offered once more, never latched with a PIN not yet tried.
                    pin_identity = self.latch.identity()
                    login = self.calls.open_logged_in(token, self.config.pin_source)
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
                        for named in {key, self.locks.key}:  # as the login began, and now
                            self._cryptoki.mark_stale(named)
                    if fault is Fault.PIN:
                        source = self.config.pin_source.describe()
                        until = f"{source} changes"
                        if self.config.pin_source.kind == "env" and bank_start() is not None:
                            until = f"the bank is started again with {source} corrected"
                        message = (
                            f"{self.name}: login refused ({ckr_name(exc)}); check the PIN "
                            f"from {source} (not tried again until {until})"
                        )
                        # Shared only when a view taken inside this login refused it.
                        latch.latch(pin_identity, message, share=module.generation > old_view)
                        raise PermanentBackendError(message) from exc
                    last = exc
                    if rescanned and (
                        fault is Fault.NO_USER_PIN
                        or (isinstance(exc, p11.NoSuchToken) and self.logins)
                    ):
                        # Fresh rescan, the known token still absent or without a user PIN:
                        # fail fast; each call meanwhile would otherwise sleep and rescan.
                        break
                    continue
                self.latch.accepted()
                self._sessions.logged_in(login)
                self.logins += 1
                self._failed_connects = 0
                self._unready = None
                invalidate()
                return token, mechanisms
            self._failed_connects += 1
            if isinstance(last, p11.NoSuchToken):
                if self.logins:
                    message = f"{self.name} is not present"
                    self._unready = (time.monotonic(), TransientBackendError, message)
                    raise TransientBackendError(message) from last
                raise TokenAbsent(
                    f"no {self.name} in PKCS#11 module {self.config.module}"
                ) from last
            error = translate(last, fault_of(last), "log in", self.name)
            if fault_of(last) is Fault.NO_USER_PIN:
                self._unready = (time.monotonic(), TransientBackendError, str(error))
            raise error from last

    def _find_token(self, library: Any) -> Any:
        """The token the key URI names; ``PermanentBackendError`` at once if it names more
        than one: no retry or module restart (which logs every backend of the process
        out) would choose, and only the URI can."""
        serial = self.config.token_serial
        try:
            return library.get_token(
                token_label=self.config.token_label or None,
                token_serial=serial.encode() if serial else None,
            )
        except p11.MultipleTokensReturned:
            message = (
                f"more than one token in PKCS#11 module {self.config.module} matches "
                f"{self.name}: name the one to use by serial= in the key URI "
                "(pkcs11-tool --list-token-slots shows each token's serial number)"
            )
            # Looked at again as an absent token is (the module docstring), by a restart
            # (as after any failed connect): once all but one are gone, the link logs in.
            self._failed_connects += 1
            self._unready = (time.monotonic(), PermanentBackendError, message)
            raise PermanentBackendError(message) from None
