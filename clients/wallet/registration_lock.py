"""The wallet's registrar runs ``register`` and ``renew`` one at a time in its directory
(``clients.registration_lock`` says why).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from clients.registration_lock import registering_alone
from clients.wallet.config import WalletConfig

P = ParamSpec("P")
R = TypeVar("R")


class _Registrar(Protocol):
    _config: WalletConfig


S = TypeVar("S", bound=_Registrar)


def one_at_a_time(
    command: str,
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Decorates a registrar's ``register`` or ``renew``: run under ``registering_alone``
    in its wallet's directory."""

    def decorate(run: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        def alone(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with registering_alone(self._config.base_dir, "wallet", command):
                return run(self, *args, **kwargs)

        functools.update_wrapper(alone, run)
        return alone

    return decorate
