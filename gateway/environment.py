"""The ``SETPAY_*`` environment variables that override the bank's configuration file
(``gateway.config``): which setting each replaces, and how its text is read.

A number is read one way wherever it comes from: ASCII digits (``gateway.ports.
parse_integer``; seconds may have a decimal point), never what ``int`` and ``float`` also
take (fullwidth digits, ``1_6``, spaces, ``nan``, ``1e3``). A value that cannot be read
raises ``ValueError`` naming the variable; whether a value read is allowed is
``gateway.config.validate``'s to say, once every override is in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

from gateway.ports import parse_integer

# ``metrics_port`` for "serve metrics on a port the OS picks", as port 0 is for ``listen``;
# 0 itself has always meant "no metrics", and configurations rely on it.
METRICS_ANY_PORT: Literal["any"] = "any"
MetricsPort = int | Literal["any"]
# Seconds as an operator writes them: ASCII digits with an optional decimal point. A minus
# sign is read, so that the range check refuses it and says what the range is.
_SECONDS = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")

# Environment variables by the field they override.
_STRINGS = {
    "SETPAY_LISTEN": "listen",
    "SETPAY_CA_LISTEN": "ca_listen",
    "SETPAY_KEYS": "keys",
    "SETPAY_LEDGER": "ledger",
    "SETPAY_METRICS_HOST": "metrics_host",
    "SETPAY_SCHEDULING": "scheduling",
}
_FLAGS = {
    "SETPAY_REFLECTION": "reflection",
    "SETPAY_LEDGER_SERVICE": "ledger_service",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def means_any_port(text: str) -> bool:
    """Whether ``text`` asks for a metrics port the OS picks: ``any``, in any case, spaces
    around it allowed; the one rule for the file, the environment and the command line."""
    return text.strip().lower() == METRICS_ANY_PORT


def parse_whole(text: str) -> int:
    """An integer setting as written in the environment or on the command line
    (``parse_integer``); raises ``ValueError`` for anything else."""
    number = parse_integer(text)
    if number is None:
        raise ValueError(text)
    return number


def parse_metrics_port(text: str) -> MetricsPort:
    """A metrics port as written on the command line or in the environment: a number,
    or ``any`` (``means_any_port``); raises ``ValueError`` for anything else."""
    return METRICS_ANY_PORT if means_any_port(text) else parse_whole(text)


def parse_seconds(text: str) -> float:
    """A number of seconds as written in the environment; raises ``ValueError`` for
    anything but ASCII digits with an optional decimal point (and minus sign)."""
    if not _SECONDS.fullmatch(text):
        raise ValueError(text)
    return float(text)


# Variables read as a value of their own kind: the field each overrides, how its text is
# read (ValueError if it cannot be), and what the refusal says it must be.
_PARSED: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "SETPAY_WORKERS": ("workers", parse_whole, "an integer"),
    "SETPAY_THREADS": ("threads", parse_whole, "an integer"),
    "SETPAY_GRACE_SECONDS": ("grace_seconds", parse_seconds, "a number of seconds"),
    "SETPAY_NOT_SERVING_SECONDS": (
        "not_serving_seconds",
        parse_seconds,
        "a number of seconds",
    ),
    "SETPAY_METRICS_PORT": (
        "metrics_port",
        parse_metrics_port,
        f"a port number or {METRICS_ANY_PORT}",
    ),
}


def environment_overrides(
    env: Mapping[str, str], skip: Collection[str] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values the environment gives, by ``BankConfig`` field, and which variable gave
    each. A field in ``skip`` (set on the command line) is left out, its variable unread:
    a value replaced is never judged. Raises ``ValueError`` naming a variable it cannot
    read."""
    changes: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, attr in _STRINGS.items():
        if name in env and attr not in skip:
            changes[attr], sources[attr] = env[name], name
    for name, (attr, parse, must_be) in _PARSED.items():
        if name in env and attr not in skip:
            try:
                changes[attr] = parse(env[name])
            except ValueError:
                raise ValueError(f"{name} must be {must_be}") from None
            sources[attr] = name
    for name, attr in _FLAGS.items():
        if name in env and attr not in skip:
            flag = env[name].lower()
            if flag not in _TRUE | _FALSE:
                raise ValueError(f"{name} must be one of {', '.join(sorted(_TRUE | _FALSE))}")
            changes[attr], sources[attr] = flag in _TRUE, name
    return changes, sources
