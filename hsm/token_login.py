"""Logging in to a token: C_Login on an open session, and the names of its login locks.

python-pkcs11 0.10 logs in only inside ``Token.open(user_pin=...)``, which leaves the
session it opened behind when C_Login fails, and it cannot tell whether a session is
still logged in. ``LoginCalls`` reaches ``C_Login`` and ``C_GetSessionInfo`` through
the module's own function list (``C_GetFunctionList``), on the same library
python-pkcs11 loaded: ``dlopen`` of a loaded library returns that library, so these
calls see the same sessions and login state. Call them with the module lock held, like
every other call. The structures are the PKCS#11 2.40 layouts with the platform's
default alignment, as on Linux and other Unix systems (Windows modules pack them to one
byte; setpay does not run there).

A real HSM locks the user PIN after a few wrong tries: a refused PIN is latched
(``hsm.pin_latch.PinLatch``), and not offered again until its source changes; a PIN
file's refusal, and an environment PIN's in a bank start, is shared with the other
processes of this host that log in to that token, in a record beside its login lock.
A PIN that cannot be the one meant (``pin_problem``) is never offered. The module's view
of the token may hold an outdated PIN state: ``view_may_be_stale`` says when a login
should restart it first, so that a refusal by an old view is not shared.

"The file changed" means two things here. For the latch, its device, inode,
modification time or size changed (new content, a new file, ``touch``): only that
releases a refusal. For the restart, the later of its modification and inode change
times is newer than the view, so a ``chmod`` or ``chown`` also restarts the module (once:
``Cryptoki.note_pin_file_seen``) but does not release a refusal; the PIN read is the same.

Lock names (``TokenLocks``): the login lock, the PIN-refusal records beside it and the
key lock (``TokenLink.admin_lock``) are named after the token itself: the module's real
path and the serial number C_GetTokenInfo gives (no login needed), whichever URI fields
selected it. A process naming the token by label and one naming it by serial (or by
both) take the same locks, so neither claims a key version the other is claiming, nor
logs in beside it, nor offers a PIN file the other had refused. A URI with a serial
names them at once (that serial is the token's). One with a label only names them
after the label until its first login finds the token: under that lock it looks the
token up, then takes the token's own login lock too, holding both (the label's is always
taken first, so no two processes wait for each other), and logs in under both; a view
of the module that login took under the label's lock alone is replaced by one taken
inside the token's, as a shared refusal needs (``hsm.pin_latch``). Later logins take the token's
lock alone, and follow it should another token answer to the label. The key lock is
named as it is taken, once the link has connected (``TokenLink.admin_lock``): a token
made again under the label is another token, and its key lock is the one taken; a call
made under a key lock that a reconnect found no longer the token's is refused. A token that
reports no serial shares its locks with every such token of its module: more waiting,
never less. The lock files are in the lock directory (``x-lock-dir``): processes given
different lock directories still take different locks for one token, so every process
using a token must be given the same directory (or none: the per-user default).

Errors raised: ``PermanentBackendError`` (the module's function list is unusable, or a
latched PIN refusal) and python-pkcs11 exceptions for C_Login's return codes.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
from typing import Any

from pkcs11 import exceptions as p11

from hsm.cryptoki import Cryptoki
from hsm.errors import PermanentBackendError
from hsm.filelock import exclusive_lock
from hsm.pin_latch import PinLatch
from hsm.pinsource import PinSource

#: CK_FUNCTION_LIST up to the last entry used here, in the order PKCS#11 2.40 fixes.
_FUNCTION_NAMES = (
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_Login",
)

#: CK_STATE values of a session in which the normal user is logged in.
_USER_STATES = frozenset({1, 3})  # CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS

#: How much newer than a PIN file's change the module's view of the token must be to
#: count as taken after it (no restart is then made for the file). Local file times come
#: from the kernel's coarse clock, up to one tick (10 ms at HZ=100, the coarsest Linux
#: tick) behind the clock the view's time is read from: twice that. Coarser or remote
#: times (1 s or 2 s timestamps, an NFS server's clock skew) can make a file changed
#: after the view look older than it, and no restart is made: a login may then be refused
#: by the older view, which that backend alone latches (see the module docstring).
FILE_CLOCK_SLACK_NS = 20_000_000

_CKR_OK = 0
_CKR_USER_ALREADY_LOGGED_IN = 0x100
_CKU_USER = 1

#: What C_Login may return, as the exceptions python-pkcs11 raises for those codes (it
#: keeps its own table private). Anything else becomes the bare PKCS11Error it raises
#: for unmapped codes, which ``hsm.ckr`` reads the same way.
_LOGIN_ERRORS: dict[int, type[p11.PKCS11Error]] = {
    0x002: p11.HostMemory,
    0x005: p11.GeneralError,
    0x006: p11.FunctionFailed,
    0x007: p11.ArgumentsBad,
    0x030: p11.DeviceError,
    0x031: p11.DeviceMemory,
    0x032: p11.DeviceRemoved,
    0x050: p11.FunctionCancelled,
    0x0A0: p11.PinIncorrect,
    0x0A1: p11.PinInvalid,
    0x0A2: p11.PinLenRange,
    0x0A3: p11.PinExpired,
    0x0A4: p11.PinLocked,
    0x0B0: p11.SessionClosed,
    0x0B3: p11.SessionHandleInvalid,
    0x0E0: p11.TokenNotPresent,
    0x0E1: p11.TokenNotRecognised,
    0x101: p11.UserNotLoggedIn,
    0x102: p11.UserPinNotInitialized,
    0x104: p11.AnotherUserAlreadyLoggedIn,
    0x105: p11.UserTooManyTypes,
}

_ulong = ctypes.c_ulong


class _FunctionList(ctypes.Structure):
    _fields_ = [("version", ctypes.c_ubyte * 2)] + [
        (name, ctypes.c_void_p) for name in _FUNCTION_NAMES
    ]


class _SessionInfo(ctypes.Structure):
    _fields_ = [
        ("slot_id", _ulong),
        ("state", _ulong),
        ("flags", _ulong),
        ("device_error", _ulong),
    ]


_GetSessionInfo = ctypes.CFUNCTYPE(_ulong, _ulong, ctypes.POINTER(_SessionInfo))
_Login = ctypes.CFUNCTYPE(_ulong, _ulong, _ulong, ctypes.c_char_p, _ulong)


class LoginCalls:
    """``C_GetSessionInfo`` and ``C_Login`` of one PKCS#11 module, loaded on first use."""

    def __init__(self, module_path: str) -> None:
        self._path = module_path
        self._library: ctypes.CDLL | None = None
        self._get_session_info: Any = None
        self._login: Any = None

    def log_in(self, session: Any, pin: str) -> None:
        """C_Login as the normal user on this python-pkcs11 session.

        Already logged in (by another backend of this process: login state belongs to
        the process) counts as success.
        """
        self._load()
        secret = pin.encode("utf-8")
        rv = self._login(session.handle, _CKU_USER, secret, len(secret))
        if rv in (_CKR_OK, _CKR_USER_ALREADY_LOGGED_IN):
            return
        error = _LOGIN_ERRORS.get(rv)
        raise error() if error else p11.PKCS11Error(f"Unmapped error code {hex(rv)}")

    def open_logged_in(self, token: Any, pin_source: PinSource) -> Any:
        """A new session on ``token``, logged in; closed again if the login fails."""
        pin = pin_source.read()
        problem = pin_problem(pin)
        if problem is not None:
            # Not offered: a real HSM counts every refused PIN towards locking it.
            raise PermanentBackendError(
                f"the PIN from {pin_source.describe()} {problem}: not offered to the token"
            )
        # Not Token.open(user_pin=...): it leaves its session open when C_Login fails.
        session = token.open(rw=True)
        try:
            self.log_in(session, pin)
        except BaseException:
            with contextlib.suppress(p11.PKCS11Error):
                session.close()
            raise
        return session

    def logged_in(self, session: Any) -> bool:
        """True if the normal user is logged in on this python-pkcs11 session."""
        self._load()
        info = _SessionInfo()
        if self._get_session_info(session.handle, ctypes.byref(info)) != _CKR_OK:
            return False  # a dead session is logged in to nothing
        return info.state in _USER_STATES

    def _load(self) -> None:
        if self._library is not None:
            return
        try:
            library = ctypes.CDLL(self._path)
            get_function_list = library.C_GetFunctionList
        except (OSError, AttributeError) as exc:
            raise PermanentBackendError(
                f"cannot load C_GetFunctionList of PKCS#11 module {self._path}"
            ) from exc
        get_function_list.restype = _ulong
        get_function_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionList))]
        table = ctypes.POINTER(_FunctionList)()
        if get_function_list(ctypes.byref(table)) != _CKR_OK or not table:
            raise PermanentBackendError(f"PKCS#11 module {self._path} gave no function list")
        functions = table.contents
        if not functions.C_GetSessionInfo or not functions.C_Login:
            raise PermanentBackendError(f"PKCS#11 module {self._path} lacks C_Login")
        self._get_session_info = _GetSessionInfo(functions.C_GetSessionInfo)
        self._login = _Login(functions.C_Login)
        self._library = library


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be the token's PIN as meant (None if it may be), in words that
    show nothing of it.

    Only the marks of a file saved wrong: a leading byte-order mark (an editor's "UTF-8
    with BOM") and a line break (a second line, a stray carriage return, a Unicode line
    or paragraph separator). Offered, each is a wrong try a real HSM counts towards
    locking the PIN, for a mistake that says nothing but "PIN incorrect". Anything else
    is offered as typed: this is no PIN policy, and a token whose PIN was made with a
    tab, a form feed or another control character (SoftHSM takes them) must still log
    in. Hence not everything ``str.splitlines`` breaks on: the vertical tab, form feed,
    file/group/record separators and NEL end no line an editor writes.
    """
    if pin.startswith("\ufeff"):
        return "starts with a byte-order mark (save the file as plain UTF-8, without one)"
    if any(char in _LINE_BREAKS for char in pin):
        return (
            "holds a line break (a PIN file holds one line, ended by one LF or CRLF or by nothing)"
        )
    return None


#: A file's line ends (LF, CR), and the Unicode line and paragraph separators.
_LINE_BREAKS = frozenset("\n\r\u2028\u2029")


class TokenLocks:
    """The names of one token's lock files and PIN-refusal records (see "Lock names" in
    the module docstring): ``stem`` is their path without its suffix, ``key`` the token
    as this process names it to its module (``Cryptoki.mark_stale``)."""

    def __init__(
        self, module: str, directory: str, latch: PinLatch, label: str | None, serial: str | None
    ) -> None:
        self._module = os.path.realpath(module)
        self._directory = directory
        self._latch = latch
        self.key = self.stem = ""
        if serial:
            self._name_after_serial(serial)  # the serial C_GetTokenInfo gives that token
        else:
            self._name(f"label\0{label or ''}")  # until the token is seen

    def follow(self, token: Any, held: contextlib.ExitStack[Any], timeout: float) -> bool:
        """Name the locks after ``token`` (call with the login lock of the current name
        held); if that renamed them, take the new name's login lock too (kept in ``held``)
        and raise a PIN refusal recorded there. Whether it renamed them.

        The old lock stays held: a process takes a label's lock before its token's, never
        the reverse, so none waits for a lock held by one waiting for its own (two tokens
        that swapped labels under running processes could: the lock's timeout ends it).
        """
        if not self.name_after(token):
            return False
        held.enter_context(exclusive_lock(f"{self.stem}.login.lock", timeout))
        self._latch.check_shared()
        return True

    def name_after(self, token: Any) -> bool:
        """Name the locks after ``token`` (python-pkcs11's: its serial, as C_GetTokenInfo
        gives it); whether that changed their name."""
        serial = getattr(token, "serial", None) or b""  # none reported: see the module
        return self._name_after_serial(serial if isinstance(serial, bytes) else str(serial))

    def _name_after_serial(self, serial: bytes | str) -> bool:
        raw = serial if isinstance(serial, bytes) else serial.encode("utf-8", "surrogateescape")
        return self._name(f"serial\0{raw.rstrip(b' ' + bytes(1)).hex()}")  # padding dropped

    def _name(self, identity: str) -> bool:
        key = f"{self._module}\0{identity}"
        if key == self.key:
            return False
        self.key = key
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.stem = os.path.join(self._directory, f"setpay-pkcs11-{digest}")
        self._latch.share_at(self.stem)
        return True


def _pin_file_key(token: str, latch: PinLatch) -> str:
    return f"{token}\0{latch.location}"


def view_may_be_stale(
    module: Cryptoki, token: str, latch: PinLatch, file_restart_seconds: float
) -> bool:
    """Whether ``module``'s view of ``token`` may hold an outdated PIN state, so that a
    login should restart the module first: marked so (``Cryptoki.mark_stale``), or taken
    before the PIN file last changed (its PIN may have been reset to the file's since),
    unless a login of that file restarted the module ``file_restart_seconds`` ago or
    less. A query only: the login records what it saw with ``note_login_view``."""
    since = module.view_since()
    if since is None:
        return False  # not initialized here: the login's own initialization is newer
    if module.is_stale(token):
        return True
    changed = latch.changed_ns()
    if changed is None:
        return False
    key = _pin_file_key(token, latch)
    if module.pin_file_seen_before_init(key, changed) or since > changed + FILE_CLOCK_SLACK_NS:
        return False
    return not module.pin_file_restarted_within(key, file_restart_seconds)


def note_login_view(module: Cryptoki, token: str, latch: PinLatch, *, restarting: bool) -> None:
    """Record the PIN file's state a login saw before its first attempt (the login lock
    held, no refusal found): the next initialization, this login's if ``restarting``, is
    newer, and later logins restart nothing for that state."""
    changed = latch.changed_ns()
    if changed is not None:
        module.note_pin_file_seen(_pin_file_key(token, latch), changed, restarting=restarting)
