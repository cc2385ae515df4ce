"""How the protocol-core tests check a refusal: the ProtocolError, its code and its reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from setcore.errors import ErrorCode, ProtocolError


def refused(code: int, call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """Run ``call`` expecting a ProtocolError with ``code``; return its reason."""
    with pytest.raises(ProtocolError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value
    return caught.value.reason


def code_name(caught: pytest.ExceptionInfo[ProtocolError]) -> str:
    """The name of the code a caught ProtocolError carries (``ERROR_CODE_...``)."""
    return ErrorCode.Name(caught.value.code)
