"""The protocol's error tree.

    SetcoreError
    ├── ProtocolError        a check the protocol makes failed; carries a SET ErrorCode
    ├── PeerError            the peer answered with a SET Error (its code is carried)
    └── ConfigurationError   setcore was given something it cannot work with (a bad profile)

A ``ProtocolError`` maps to exactly one SET Error code (``setpay.v1.ErrorCode``). Its
``reason`` is for the local log only: it never reaches the peer (the peer gets the code
and a fixed text), and it never contains a PAN or key material.
"""

from __future__ import annotations

from setcore.enum_names import code_name
from setpay.v1 import error_pb2

ErrorCode = error_pb2.ErrorCode

# A peer's value quoted in a reason (a content type, an algorithm name) is cut to this
# many characters: enough to tell one such name from another, and one request cannot
# write more into the log, which gets every refusal's reason (``gateway.answers``).
MAX_QUOTED_CHARS = 64


class SetcoreError(Exception):
    """Base of every error setcore raises."""


class ConfigurationError(SetcoreError):
    """setcore was asked to use something it does not support (profile, algorithm)."""


class ProtocolError(SetcoreError):
    """A protocol check failed; ``code`` is the SET ErrorCode to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code_name(ErrorCode, code)}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def code_name(self) -> str:
        """The ErrorCode's name, e.g. ``ERROR_CODE_SIGNATURE_FAILURE``."""
        return code_name(ErrorCode, self.code)


def quoted(value: str) -> str:
    """``value`` as a reason quotes what a peer sent: its repr (control characters
    escaped, so one line stays one line), of at most MAX_QUOTED_CHARS of it, and how
    long it was when it was longer."""
    if len(value) <= MAX_QUOTED_CHARS:
        return repr(value)
    return f"{value[:MAX_QUOTED_CHARS]!r}... ({len(value)} characters)"


def fail(code: int, reason: str) -> ProtocolError:
    """Build a ProtocolError (``raise fail(...)`` reads as the check that failed)."""
    return ProtocolError(code, reason)


class PeerError(SetcoreError):
    """The peer answered with a SET Error instead of a response.

    ``message`` is the Error's text, the peer's own words (signed, but any peer may sign
    anything): the exception's text quotes it (``quoted``), so that what a command prints
    or a log line records is one line of bounded length, whatever the peer sent. ``code``
    may be one this build does not define (a peer of a later release): it is named as
    ``setcore.enum_names.code_name`` says; whether it is final is the reader's call (the
    merchant and the wallet hold such a code back as outcome unknown).
    """

    def __init__(self, code: int, message: str = "") -> None:
        said = f" {quoted(message)}" if message else ""
        super().__init__(f"peer refused the request: {code_name(ErrorCode, code)}{said}")
        self.code = code

    @property
    def code_name(self) -> str:
        """The ErrorCode's name (``ErrorCode N`` for one this build does not define)."""
        return code_name(ErrorCode, self.code)
