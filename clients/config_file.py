"""Reading a client's TOML configuration file: UTF-8 text, known tables and keys only.

Shared by ``merchant.toml`` and ``wallet.toml``. A misspelt setting (``answr =`` for
``answer =``) would otherwise be ignored and its default used without a word, which is
worse than refusing to start: every error here names the file and the setting, as the
bank's ``setpay.toml`` does (``gateway.config``, which clients may not import).
``check_keys`` refuses, in either file or its variable, a key URI no client can use.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clients.errors import ConfigError
from clients.identity import is_ephemeral_uri
from clients.peers import PeerConfig

#: The keys of a peer table (``[gateway]``, ``[ca]``, ``[merchant]`` in the wallet):
#: ``PeerConfig.from_table`` reads each field under its own name.
PEER_KEYS = frozenset(field.name for field in dataclasses.fields(PeerConfig))


def read(path: Path, what: str) -> dict[str, Any]:
    """The parsed file; ``ConfigError`` naming ``path`` when it is missing, unreadable,
    not UTF-8 or not TOML (``what``: the file's owner, for the first)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no {what} configuration at {path}") from None
    except UnicodeDecodeError:
        # Not chained: the decoder's error quotes the bytes it could not read.
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except RecursionError:
        # Arrays or inline tables nested past the parser's depth: no setting is.
        raise ConfigError(f"{path}: values nested too deeply to be a configuration") from None


def refuse_unknown(
    raw: Mapping[str, Any], tables: Mapping[str, frozenset[str]], path: Path
) -> None:
    """``ConfigError`` naming ``path`` and the first table or key of ``raw`` that
    ``tables`` (table name -> its keys) does not list.

    A known name whose value is not a table is left to the loader, which says so.
    """
    for name in sorted(raw):
        value = raw[name]
        if name not in tables:
            if isinstance(value, dict):
                raise ConfigError(f"{path}: unknown table [{name}]")
            raise ConfigError(f"{path}: unknown setting {name} (outside every table)")
        if isinstance(value, dict):
            unknown = sorted(set(value) - tables[name])
            if unknown:
                raise ConfigError(f"{path}: unknown setting {name}.{unknown[0]}")


def check_keys(uri: str, what: str) -> str:
    """``uri``, a client's key URI setting; ``ConfigError`` naming ``what`` (the file's key
    or the variable it came from) when it is empty or ``soft:ephemeral``.

    Only these are refused here: the rest of the URI is read when a command opens the
    keys, which some commands never do.
    """
    if not uri:
        raise ConfigError(f"{what} (a key URI) is required")
    if is_ephemeral_uri(uri):
        # register would certify keys that are gone when it exits: the merchant ID (or
        # the card) would then hold live certificates nobody can use, and the Merchant CA
        # refuses that ID a new registration.
        raise ConfigError(
            f"{what} must not be soft:ephemeral: its keys are gone when the command exits, "
            "so no certificate issued for them could ever be used (give soft:DIR or a "
            "pkcs11: URI)"
        )
    return uri
