"""The PKCS#11 login calls python-pkcs11 0.10 does not offer, on its own loaded module.

python-pkcs11 logs in only inside ``Token.open(user_pin=...)`` and cannot tell whether a
session is still logged in. ``LoginCalls`` reaches the two functions needed for that,
``C_GetSessionInfo`` and (see ``TokenLink``) ``C_Login``, through the module's own
function list (``C_GetFunctionList``), on the same library python-pkcs11 loaded:
``dlopen`` of a loaded library returns that library, so these calls see the same
sessions and login state. Call them with the module lock held, like every other call.

The structures below are the PKCS#11 2.40 layouts with the platform's default alignment,
as on Linux and other Unix systems (Windows modules pack them to one byte; setpay does
not run there).

Errors raised: ``PermanentBackendError`` when the module's function list is unusable.
"""

from __future__ import annotations

import ctypes
from typing import Any

from hsm.errors import PermanentBackendError

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

_CKR_OK = 0

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
