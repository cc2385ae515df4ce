"""Every PKCS#11 return code (CKR_*) mapped to the key backend's error tree, in one place.

python-pkcs11 raises one exception class per CKR code. Each class falls into one
``Fault``, and what the backend does next depends on that fault:

    PIN           wrong, locked or expired PIN: PermanentBackendError at once, no retry
                  (a real HSM locks the PIN after a few wrong tries)
    NO_USER_PIN   the token has no user PIN yet (initialized, its user PIN not set: an
                  operator between ``--init-token`` and ``--init-pin``): no PIN was
                  refused and no retry counter moved, so TransientBackendError, and the
                  next login rescans (SoftHSM reads PIN state only at initialization)
    TOKEN_LOST    token gone: reconnect (re-initialize, log in) and retry once;
                  TransientBackendError if the token is still not there
    DEAD_SESSION  one session closed under us (a network HSM ends idle ones): if the
                  token is there and the login holds, close that session and retry once
                  on a new one; reconnect only if that fails too. Not a token loss: a
                  module restart would log out every backend of the process
    STALE_OBJECT  a cached object handle is dead (the object was destroyed, e.g. by
                  another process): drop the object caches and retry once on the same
                  session; KeyNotFound if the object is really gone. Not a token loss: a
                  module restart would log out every backend of the process. (The caller
                  first asks the token, as for AMBIGUOUS: handles also die with a token
                  or a login.)
    LOGGED_OUT    our login was dropped (another handle in this process logged out):
                  log in again, as for TOKEN_LOST
    BUSY          out of sessions or memory: TransientBackendError, nothing to reset
    AMBIGUOUS     CKR_GENERAL_ERROR / CKR_FUNCTION_FAILED and "no such object": SoftHSM
                  returns these both for bad input and when its token directory vanished,
                  so the caller asks the token whether it is still there and still logged
                  in, then decides (INPUT, TOKEN_LOST or LOGGED_OUT)
    INPUT         the token refused the data or template: the operation's own error
                  (DecapsulationError for key transport, UnsupportedAlgorithm otherwise);
                  the only fault that becomes a DecapsulationError
    UNSUPPORTED   mechanism or function missing on this token: UnsupportedAlgorithm
    USAGE         the key's own attributes forbid the operation: KeyUsageError
    FATAL         read-only token, and anything not listed: PermanentBackendError

Messages carry the CKR name (e.g. ``CKR_DEVICE_REMOVED``), never data or a PIN.
"""

from __future__ import annotations

import enum

from pkcs11 import exceptions as p11

from hsm.errors import (
    DecapsulationError,
    KeyBackendError,
    KeyNotFound,
    KeyUsageError,
    PermanentBackendError,
    TransientBackendError,
    UnsupportedAlgorithm,
)


class Fault(enum.Enum):
    """What kind of failure a CKR code reports (see the module docstring)."""

    PIN = "pin"
    NO_USER_PIN = "no-user-pin"
    TOKEN_LOST = "token-lost"  # noqa: S105 - a fault name, not a password
    DEAD_SESSION = "dead-session"
    STALE_OBJECT = "stale-object"
    LOGGED_OUT = "logged-out"
    BUSY = "busy"
    AMBIGUOUS = "ambiguous"
    INPUT = "input"
    UNSUPPORTED = "unsupported"
    USAGE = "usage"
    FATAL = "fatal"


_FAULTS: dict[type[p11.PKCS11Error], Fault] = {
    p11.PinIncorrect: Fault.PIN,
    p11.PinInvalid: Fault.PIN,
    p11.PinLenRange: Fault.PIN,
    p11.PinExpired: Fault.PIN,
    p11.PinLocked: Fault.PIN,
    p11.UserPinNotInitialized: Fault.NO_USER_PIN,
    p11.DeviceRemoved: Fault.TOKEN_LOST,
    p11.DeviceError: Fault.TOKEN_LOST,
    p11.TokenNotPresent: Fault.TOKEN_LOST,
    p11.TokenNotRecognised: Fault.TOKEN_LOST,
    p11.SessionClosed: Fault.DEAD_SESSION,
    p11.SessionHandleInvalid: Fault.DEAD_SESSION,
    p11.ObjectHandleInvalid: Fault.STALE_OBJECT,
    p11.KeyHandleInvalid: Fault.STALE_OBJECT,
    p11.SlotIDInvalid: Fault.TOKEN_LOST,
    p11.NoSuchToken: Fault.TOKEN_LOST,
    p11.UserNotLoggedIn: Fault.LOGGED_OUT,
    p11.SessionCount: Fault.BUSY,
    p11.DeviceMemory: Fault.BUSY,
    p11.HostMemory: Fault.BUSY,
    p11.FunctionCancelled: Fault.BUSY,
    p11.OperationActive: Fault.BUSY,
    p11.GeneralError: Fault.AMBIGUOUS,
    p11.FunctionFailed: Fault.AMBIGUOUS,
    p11.NoSuchKey: Fault.AMBIGUOUS,
    p11.ArgumentsBad: Fault.INPUT,
    p11.AttributeValueInvalid: Fault.INPUT,
    p11.AttributeTypeInvalid: Fault.INPUT,
    p11.DataInvalid: Fault.INPUT,
    p11.DataLenRange: Fault.INPUT,
    p11.DomainParamsInvalid: Fault.INPUT,
    p11.EncryptedDataInvalid: Fault.INPUT,
    p11.EncryptedDataLenRange: Fault.INPUT,
    p11.KeySizeRange: Fault.INPUT,
    p11.KeyTypeInconsistent: Fault.INPUT,
    p11.MechanismParamInvalid: Fault.INPUT,
    p11.TemplateIncomplete: Fault.INPUT,
    p11.TemplateInconsistent: Fault.INPUT,
    p11.MechanismInvalid: Fault.UNSUPPORTED,
    p11.FunctionNotSupported: Fault.UNSUPPORTED,
    p11.TokenWriteProtected: Fault.FATAL,
    p11.SessionReadOnly: Fault.FATAL,
    p11.MultipleTokensReturned: Fault.FATAL,
    p11.MultipleObjectsReturned: Fault.FATAL,
}

#: CKR codes python-pkcs11 0.10 raises as a bare PKCS11Error("Unmapped error code 0x..").
_UNMAPPED: dict[int, tuple[str, Fault]] = {
    0x068: ("CKR_KEY_FUNCTION_NOT_PERMITTED", Fault.USAGE),
    0x01B: ("CKR_ACTION_PROHIBITED", Fault.USAGE),
    0x190: ("CKR_CRYPTOKI_NOT_INITIALIZED", Fault.TOKEN_LOST),
}


def fault_of(exc: p11.PKCS11Error) -> Fault:
    """The fault a python-pkcs11 exception reports."""
    for cls in type(exc).__mro__:
        fault = _FAULTS.get(cls)
        if fault is not None:
            return fault
    code = _unmapped_code(exc)
    if code in _UNMAPPED:
        return _UNMAPPED[code][1]
    if "not initialized" in str(exc):
        # python-pkcs11 reports CKR_CRYPTOKI_NOT_INITIALIZED this way: re-initialize.
        return Fault.TOKEN_LOST
    return Fault.FATAL


def ckr_name(exc: p11.PKCS11Error) -> str:
    """A short CKR-ish name for messages: the exception class or the unmapped code."""
    code = _unmapped_code(exc)
    if code is not None:
        return _UNMAPPED.get(code, (f"CKR 0x{code:x}", Fault.FATAL))[0]
    return type(exc).__name__


def translate(exc: p11.PKCS11Error, fault: Fault, action: str, token: str) -> KeyBackendError:
    """The hsm error for a failure of ``action`` ("sign", "decapsulate", ...) on ``token``.

    ``fault`` is passed in, not recomputed, because the caller may have settled an
    AMBIGUOUS fault by probing the token.
    """
    name = ckr_name(exc)
    if fault is Fault.NO_USER_PIN:
        return TransientBackendError(
            f"{token} has no user PIN yet ({name}): its security officer sets it; "
            "no PIN was refused"
        )
    if fault in (Fault.TOKEN_LOST, Fault.DEAD_SESSION, Fault.LOGGED_OUT, Fault.BUSY):
        return TransientBackendError(f"{token} cannot {action} now ({name})")
    if fault is Fault.INPUT and action == "decapsulate":
        # Bad input is the one fault a sender controls: every kind of it must look the
        # same to them (no oracle in the error). Other faults say nothing about the input
        # and are the operator's to fix, so they keep their own error below.
        return DecapsulationError("decapsulation failed")
    if fault is Fault.STALE_OBJECT:
        return KeyNotFound(f"{token} no longer has the object to {action} with ({name})")
    if fault is Fault.PIN:
        return PermanentBackendError(f"{token}: login refused ({name}); check the PIN source")
    if fault is Fault.USAGE:
        return KeyUsageError(f"{token} refused to {action}: the key's attributes forbid it")
    if fault in (Fault.UNSUPPORTED, Fault.INPUT):
        return UnsupportedAlgorithm(f"{token} cannot {action} as asked ({name})")
    return PermanentBackendError(f"{token} failed to {action} ({name})")


def _unmapped_code(exc: p11.PKCS11Error) -> int | None:
    if type(exc) is not p11.PKCS11Error:
        return None
    text = str(exc)
    marker = "Unmapped error code "
    if not text.startswith(marker):
        return None
    try:
        return int(text[len(marker) :], 16)
    except ValueError:
        return None
