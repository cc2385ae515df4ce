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

from setpay.v1 import error_pb2

ErrorCode = error_pb2.ErrorCode


class SetcoreError(Exception):
    """Base of every error setcore raises."""


class ConfigurationError(SetcoreError):
    """setcore was asked to use something it does not support (profile, algorithm)."""


class ProtocolError(SetcoreError):
    """A protocol check failed; ``code`` is the SET ErrorCode to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{ErrorCode.Name(code)}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def code_name(self) -> str:
        """The ErrorCode's name, e.g. ``ERROR_CODE_SIGNATURE_FAILURE``."""
        return ErrorCode.Name(self.code)


def fail(code: int, reason: str) -> ProtocolError:
    """Build a ProtocolError (``raise fail(...)`` reads as the check that failed)."""
    return ProtocolError(code, reason)


class PeerError(SetcoreError):
    """The peer answered with a SET Error instead of a response."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(f"peer refused the request: {ErrorCode.Name(code)} {message}".strip())
        self.code = code

    @property
    def code_name(self) -> str:
        """The ErrorCode's name."""
        return ErrorCode.Name(self.code)
