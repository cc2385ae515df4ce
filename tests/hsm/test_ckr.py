"""CKR codes to faults, and faults to the key backend's errors, action by action."""

from __future__ import annotations

import pytest
from pkcs11 import exceptions as p11

from hsm.ckr import Fault, ckr_name, fault_of, translate
from hsm.errors import (
    DecapsulationError,
    KeyBackendError,
    KeyNotFound,
    KeyUsageError,
    PermanentBackendError,
    TransientBackendError,
    UnsupportedAlgorithm,
)

TOKEN = "token 'bank'"


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (p11.PinIncorrect(), Fault.PIN),
        (p11.PinExpired(), Fault.PIN),
        (p11.PinLocked(), Fault.PIN),
        (p11.UserPinNotInitialized(), Fault.NO_USER_PIN),
        (p11.DeviceRemoved(), Fault.TOKEN_LOST),
        (p11.TokenNotPresent(), Fault.TOKEN_LOST),
        (p11.SessionHandleInvalid(), Fault.DEAD_SESSION),
        (p11.SessionClosed(), Fault.DEAD_SESSION),
        (p11.NoSuchToken(), Fault.TOKEN_LOST),
        (p11.ObjectHandleInvalid(), Fault.STALE_OBJECT),
        (p11.KeyHandleInvalid(), Fault.STALE_OBJECT),
        (p11.UserNotLoggedIn(), Fault.LOGGED_OUT),
        (p11.SessionCount(), Fault.BUSY),
        (p11.DeviceMemory(), Fault.BUSY),
        (p11.GeneralError(), Fault.AMBIGUOUS),
        (p11.FunctionFailed(), Fault.AMBIGUOUS),
        (p11.NoSuchKey(), Fault.AMBIGUOUS),
        (p11.EncryptedDataInvalid(), Fault.INPUT),
        (p11.DataLenRange(), Fault.INPUT),
        (p11.ArgumentsBad(), Fault.INPUT),
        (p11.MechanismInvalid(), Fault.UNSUPPORTED),
        (p11.FunctionNotSupported(), Fault.UNSUPPORTED),
        (p11.TokenWriteProtected(), Fault.FATAL),
        (p11.MultipleObjectsReturned(), Fault.FATAL),
        (p11.PKCS11Error("Unmapped error code 0x68"), Fault.USAGE),
        (p11.PKCS11Error("Unmapped error code 0x1b"), Fault.USAGE),
        (p11.PKCS11Error("Unmapped error code 0x190"), Fault.TOKEN_LOST),
        (p11.PKCS11Error("Initialisation error (not initialized)."), Fault.TOKEN_LOST),
        (p11.PKCS11Error("Unmapped error code 0x80000001"), Fault.FATAL),
        (p11.PKCS11Error("something new"), Fault.FATAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.name,
)
def test_fault_of_each_ckr_family(exc: p11.PKCS11Error, fault: Fault) -> None:
    assert fault_of(exc) is fault


@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (p11.PinIncorrect(), "PinIncorrect"),
        (p11.PKCS11Error("Unmapped error code 0x68"), "CKR_KEY_FUNCTION_NOT_PERMITTED"),
        (p11.PKCS11Error("Unmapped error code 0x80000001"), "CKR 0x80000001"),
    ],
)
def test_ckr_name_for_messages(exc: p11.PKCS11Error, name: str) -> None:
    assert ckr_name(exc) == name


#: What every fault becomes, for an action other than decapsulate.
_BY_FAULT: list[tuple[p11.PKCS11Error, Fault, type[KeyBackendError], str]] = [
    (p11.PinIncorrect(), Fault.PIN, PermanentBackendError, "login refused (PinIncorrect)"),
    (p11.PinExpired(), Fault.PIN, PermanentBackendError, "login refused (PinExpired)"),
    (p11.PinLocked(), Fault.PIN, PermanentBackendError, "login refused (PinLocked)"),
    (
        p11.UserPinNotInitialized(),
        Fault.NO_USER_PIN,
        TransientBackendError,
        "has no user PIN yet (UserPinNotInitialized)",
    ),
    (p11.DeviceRemoved(), Fault.TOKEN_LOST, TransientBackendError, "now (DeviceRemoved)"),
    (p11.UserNotLoggedIn(), Fault.LOGGED_OUT, TransientBackendError, "now (UserNotLoggedIn)"),
    (p11.SessionCount(), Fault.BUSY, TransientBackendError, "now (SessionCount)"),
    (p11.KeyHandleInvalid(), Fault.STALE_OBJECT, KeyNotFound, "no longer has the object"),
    (
        p11.PKCS11Error("Unmapped error code 0x68"),
        Fault.USAGE,
        KeyUsageError,
        "the key's attributes forbid it",
    ),
    (p11.MechanismInvalid(), Fault.UNSUPPORTED, UnsupportedAlgorithm, "(MechanismInvalid)"),
    (p11.TokenWriteProtected(), Fault.FATAL, PermanentBackendError, "(TokenWriteProtected)"),
    (
        p11.PKCS11Error("Unmapped error code 0x80000001"),
        Fault.FATAL,
        PermanentBackendError,
        "(CKR 0x80000001)",
    ),
]


@pytest.mark.parametrize("action", ["sign", "decapsulate", "list keys"])
@pytest.mark.parametrize(
    ("exc", "fault", "error", "message"),
    _BY_FAULT,
    ids=[f"{type(row[0]).__name__}-{row[1].name}-{index}" for index, row in enumerate(_BY_FAULT)],
)
def test_translate_keeps_the_fault_for_every_action(
    action: str, exc: p11.PKCS11Error, fault: Fault, error: type[KeyBackendError], message: str
) -> None:
    # A refused PIN, a key whose attributes forbid the operation, a missing mechanism or a
    # broken token is the same fault whatever was asked: decapsulate must not mask it.
    translated = translate(exc, fault, action, TOKEN)
    assert type(translated) is error
    assert message in str(translated)
    assert TOKEN in str(translated)


@pytest.mark.parametrize(
    "exc", [p11.EncryptedDataInvalid(), p11.DataLenRange(), p11.ArgumentsBad(), p11.GeneralError()]
)
def test_translate_bad_input_to_decapsulate_says_nothing_more(exc: p11.PKCS11Error) -> None:
    # Bad input (a GeneralError settled as INPUT by probing the token included) is the one
    # fault a sender controls: one message for all of them, or it becomes an oracle.
    translated = translate(exc, Fault.INPUT, "decapsulate", TOKEN)
    assert type(translated) is DecapsulationError
    assert str(translated) == "decapsulation failed"


def test_translate_bad_input_to_other_actions_is_unsupported() -> None:
    translated = translate(p11.TemplateInconsistent(), Fault.INPUT, "sign", TOKEN)
    assert type(translated) is UnsupportedAlgorithm
    assert str(translated) == f"{TOKEN} cannot sign as asked (TemplateInconsistent)"
