"""Open a key backend from a key URI; describe a key URI safely for logs.

    soft:ephemeral                           keys in memory, gone on exit (tests, demo)
    soft:DIR                                 keystore DIR, passphrase in $SETPAY_KEYSTORE_PASSPHRASE
    soft:DIR;pin-source=file:PATH            ... passphrase read from PATH
    soft:DIR;pin-source=env:NAME             ... passphrase read from $NAME
    pkcs11:module=PATH;token=LABEL;pin-source=file:PATH
    pkcs11:module=PATH;serial=SERIAL;pin-source=env:NAME
    pkcs11:...;x-lock-dir=/run/setpay       ... lock files in /run/setpay (0700, this user's)

PKCS#11 URIs follow RFC 7512's shape: ``;``-separated path attributes, an optional
``?``-query with ``&``-separated attributes, values %-decoded. ``module-path`` is
accepted for ``module``; ``x-pool-size`` and ``x-pool-wait-ms`` tune the session pool
(the wait bounds a call's wait for a session, then for the PKCS#11 module);
``x-lock-dir`` names the directory of the inter-process lock files (an absolute path to
a directory only this user can use; default ``<temp dir>/setpay-locks-<uid>``, see
``hsm.filelock.lock_directory``).
A PIN is never accepted inside a URI (``pin-value``): URIs end up in logs and process
listings. People still paste one there, in any shape, so nothing that fails validation
is ever echoed: errors name a bad attribute by its position ("attribute 4 has no '='"),
and ``describe_uri`` shows only known, well-formed attributes, with ``***`` for the
rest. Errors: ``InvalidKeyURI`` and, when the PKCS#11 binding is missing,
``BackendNotAvailable``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote

from hsm.base import KeyBackend
from hsm.errors import BackendNotAvailable, InvalidKeyURI
from hsm.observer import Observer
from hsm.pinsource import PinSource
from hsm.software import SoftwareBackend

#: Environment variable holding the keystore passphrase when a soft: URI names none.
PASSPHRASE_ENV = "SETPAY_KEYSTORE_PASSPHRASE"  # noqa: S105 - a variable name, not a secret

#: Attribute names whose values are secrets, redacted by ``describe_uri``.
_SECRET_ATTRIBUTES = frozenset({"pin-value", "pin", "passphrase", "password", "so-pin"})

_PKCS11_ATTRIBUTES = frozenset(
    {
        "module",
        "module-path",
        "token",
        "serial",
        "pin-source",
        "x-pool-size",
        "x-pool-wait-ms",
        "x-lock-dir",
    }
)
_SOFT_ATTRIBUTES = frozenset({"pin-source"})

#: Bounds on the URI pool settings: a pool larger than 64 sessions buys nothing when
#: token calls are serialized per process, and a wait over a minute is a hang.
MAX_POOL_SIZE = 64
MAX_POOL_WAIT_MS = 60_000

#: An integer attribute as written: ASCII digits only, at most six (above every bound).
_DECIMAL = re.compile(r"[0-9]{1,6}")


@dataclass(frozen=True)
class SoftwareKeyURI:
    """A parsed ``soft:`` URI (``directory`` None for ``soft:ephemeral``)."""

    directory: str | None
    pin_source: PinSource


@dataclass(frozen=True)
class Pkcs11KeyURI:
    """A parsed ``pkcs11:`` URI."""

    module: str
    token_label: str | None
    token_serial: str | None
    pin_source: PinSource
    pool_size: int | None = None
    pool_wait_ms: int | None = None
    lock_dir: str | None = None


KeyURI = SoftwareKeyURI | Pkcs11KeyURI


def parse_key_uri(uri: str) -> KeyURI:
    """Parse a key URI; ``InvalidKeyURI`` names the problem (never a value)."""
    scheme, sep, rest = uri.partition(":")
    if not sep:
        raise InvalidKeyURI("key URI has no scheme: expected soft:... or pkcs11:...")
    parser = _PARSERS.get(scheme)
    if parser is None:
        known = ", ".join(sorted(_PARSERS))
        raise InvalidKeyURI(f"unknown key URI scheme: expected one of {known}")
    return parser(rest)


def open_backend(uri: str, observer: Observer | None = None, *, create: bool = True) -> KeyBackend:
    """Open the key backend a URI names (reading its PIN or passphrase now).

    A keystore that is not there is made unless not ``create`` (then refused, nothing
    made); a token is never made.
    """
    parsed = parse_key_uri(uri)
    if isinstance(parsed, SoftwareKeyURI):
        if parsed.directory is None:
            return SoftwareBackend.ephemeral(observer)
        return SoftwareBackend.open(parsed.directory, parsed.pin_source, observer, create=create)
    try:
        # Imported here so a process that never opens a token never loads python-pkcs11
        # (nor initializes any PKCS#11 module before it forks).
        from hsm.pkcs11 import Pkcs11Backend, Pkcs11Config  # noqa: PLC0415
    except ImportError as exc:
        raise BackendNotAvailable("the pkcs11 backend needs python-pkcs11 installed") from exc
    config = Pkcs11Config(
        module=parsed.module,
        token_label=parsed.token_label,
        token_serial=parsed.token_serial,
        pin_source=parsed.pin_source,
        lock_dir=parsed.lock_dir,
    )
    if parsed.pool_size is not None:
        config = config.with_pool(size=parsed.pool_size)
    if parsed.pool_wait_ms is not None:
        config = config.with_pool(wait_seconds=parsed.pool_wait_ms / 1000)
    return Pkcs11Backend(config, observer)


def describe_uri(uri: str) -> str:
    """The URI for logs: known, well-formed attributes as written, ``***`` for the rest.

    Never raises. A secret attribute keeps its name (``pin-value=***``), so the reader
    sees what was wrong; anything unknown or malformed may be a pasted PIN and is
    replaced whole, or in its value when its name is known.
    """
    scheme, sep, rest = uri.partition(":")
    if not sep:
        return "<key URI without scheme>"
    if scheme == "soft":
        location, *extra = rest.split(";")
        parts = [location, *(_describe(part, _SOFT_ATTRIBUTES) for part in extra)]
        return f"soft:{';'.join(parts)}"
    if scheme == "pkcs11":
        path, qsep, query = rest.partition("?")
        described = "pkcs11:" + ";".join(
            _describe(part, _PKCS11_ATTRIBUTES) for part in path.split(";")
        )
        if qsep:
            described += "?" + "&".join(
                _describe(part, _PKCS11_ATTRIBUTES) for part in query.split("&")
            )
        return described
    return "<key URI with an unknown scheme>"


def _describe(attribute: str, allowed: frozenset[str]) -> str:
    """One attribute as ``describe_uri`` shows it."""
    if not attribute:
        return attribute
    raw_name, sep, raw_value = attribute.partition("=")
    try:
        name = unquote(raw_name, errors="strict").strip().lower()
    except UnicodeDecodeError:
        return "***"
    if not sep or (name not in allowed and name not in _SECRET_ATTRIBUTES):
        return "***"
    if name in _SECRET_ATTRIBUTES or not _well_formed(name, raw_value):
        return f"{raw_name}=***"
    return attribute


def _well_formed(name: str, raw_value: str) -> bool:
    """Whether a known attribute's value would parse (checked as the parsers check it)."""
    try:
        value = _decode(raw_value, name)
        if name == "pin-source":
            PinSource.parse(value)
        elif name == "x-pool-size":
            _bounded_int({name: value}, name, MAX_POOL_SIZE)
        elif name == "x-pool-wait-ms":
            _bounded_int({name: value}, name, MAX_POOL_WAIT_MS)
        elif name == "x-lock-dir":
            _absolute_path({name: value}, name)
    except (ValueError, InvalidKeyURI):
        return False
    return True


def _parse_soft(rest: str) -> SoftwareKeyURI:
    location, *extra = rest.split(";")
    attributes = _attributes(extra, "soft", _SOFT_ATTRIBUTES)
    directory = _decode(location, "keystore directory")
    if not directory:
        raise InvalidKeyURI("soft: URI needs a keystore directory or 'ephemeral'")
    source = _pin_source(attributes.get("pin-source"), default_env=PASSPHRASE_ENV)
    if directory == "ephemeral":
        if "pin-source" in attributes:
            raise InvalidKeyURI("soft:ephemeral takes no pin-source")
        return SoftwareKeyURI(None, source)
    return SoftwareKeyURI(directory, source)


def _parse_pkcs11(rest: str) -> Pkcs11KeyURI:
    path, qsep, query = rest.partition("?")
    items = path.split(";") + (query.split("&") if qsep else [])
    attributes = _attributes(items, "pkcs11", _PKCS11_ATTRIBUTES)
    if "module" in attributes and "module-path" in attributes:
        raise InvalidKeyURI("pkcs11 URI has both module and module-path")
    module = attributes.get("module") or attributes.get("module-path")
    if not module:
        raise InvalidKeyURI("pkcs11 URI needs module=PATH (the PKCS#11 library)")
    token, serial = attributes.get("token"), attributes.get("serial")
    if not token and not serial:
        raise InvalidKeyURI("pkcs11 URI needs token=LABEL or serial=SERIAL (never a slot)")
    if "pin-source" not in attributes:
        raise InvalidKeyURI("pkcs11 URI needs pin-source=file:PATH or pin-source=env:NAME")
    return Pkcs11KeyURI(
        module=module,
        token_label=token or None,
        token_serial=serial or None,
        pin_source=_pin_source(attributes["pin-source"], default_env=""),
        pool_size=_bounded_int(attributes, "x-pool-size", MAX_POOL_SIZE),
        pool_wait_ms=_bounded_int(attributes, "x-pool-wait-ms", MAX_POOL_WAIT_MS),
        lock_dir=_absolute_path(attributes, "x-lock-dir"),
    )


def _attributes(items: list[str], scheme: str, allowed: frozenset[str]) -> dict[str, str]:
    """Attributes by name; a bad one is named by its position, never by its text."""
    attributes: dict[str, str] = {}
    for position, item in enumerate(items, start=1):
        if not item:
            continue
        raw_name, sep, raw_value = item.partition("=")
        name = _decode(raw_name, f"attribute {position}").strip().lower()
        if name in _SECRET_ATTRIBUTES:
            raise InvalidKeyURI(
                f"{scheme} URI must not carry a secret ({name}): use pin-source=file:PATH "
                "or pin-source=env:NAME"
            )
        if not sep:
            raise InvalidKeyURI(f"{scheme} URI attribute {position} has no '='")
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise InvalidKeyURI(
                f"{scheme} URI attribute {position} is unknown: expected one of {known}"
            )
        if name in attributes:
            raise InvalidKeyURI(f"{scheme} URI attribute {name!r} appears twice")
        attributes[name] = _decode(raw_value, name)
    return attributes


def _pin_source(text: str | None, default_env: str) -> PinSource:
    if text is None:
        return PinSource("env", default_env)
    try:
        return PinSource.parse(text)
    except ValueError as exc:
        raise InvalidKeyURI(str(exc)) from exc


def _bounded_int(attributes: dict[str, str], name: str, limit: int) -> int | None:
    text = attributes.get(name)
    if text is None:
        return None
    # Not str.isdigit(): it accepts superscripts (int() then raises) and other scripts'
    # digits (int() takes them). Six ASCII digits cover every bound here.
    if not _DECIMAL.fullmatch(text) or not 1 <= int(text) <= limit:
        raise InvalidKeyURI(f"{name} must be an integer from 1 to {limit}")
    return int(text)


def _absolute_path(attributes: dict[str, str], name: str) -> str | None:
    text = attributes.get(name)
    if text is None:
        return None
    if not os.path.isabs(text):
        raise InvalidKeyURI(f"{name} must be an absolute path")
    return text


def _decode(text: str, what: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidKeyURI(f"{what} in key URI is not valid %-encoded UTF-8") from exc


def encode_uri_value(value: str) -> str:
    """%-encode a value (a path, a label) for use inside a key URI."""
    return quote(value, safe="/:@-._~")


_PARSERS: dict[str, Callable[[str], KeyURI]] = {
    "soft": _parse_soft,
    "pkcs11": _parse_pkcs11,
}
