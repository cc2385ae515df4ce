"""How a client's configuration names a peer: target, TLS files, and the insecure switch.

Shared by the merchant's and the wallet's configuration files, so both read a
``[gateway]``, ``[ca]`` or ``[merchant]`` table the same way::

    target = "127.0.0.1:7443"
    tls_ca = "tls/ca.pem"          # the CA that issued the peer's TLS certificate
    tls_cert = "tls/client.pem"    # mutual TLS only (merchant to gateway)
    tls_key = "tls/client.key"
    insecure = false               # plaintext gRPC: local experiments only
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clients.errors import ConfigError
from clients.transport import ChannelConfig


def get(table: Mapping[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    """``table[key]`` checked to be of ``kind`` (``ConfigError`` naming ``where.key``)."""
    value = table.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}.{key} must be {kind.__name__}, not {type(value).__name__}")
    return value


def subtable(raw: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any] | None:
    """The TOML table ``key`` of a configuration file (None when absent); ``ConfigError``
    naming the file and the key when it is another value (``merchant = 3``, an array of
    tables)."""
    table = raw.get(key)
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: {key} must be a table, not {type(table).__name__}")
    return table


# The highest TCP port. Port 0 passes: a listen address may ask the OS to pick one.
MAX_PORT = 65535
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII only: int() would take fullwidth digits


def check_target(target: str, what: str) -> str:
    """Refuse a target (or listen address) that is not HOST:PORT, port 0 to 65535."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not _PORT.fullmatch(port) or int(port) > MAX_PORT:
        raise ConfigError(f"{what} must be HOST:PORT, not {target!r}")
    return target


@dataclass(frozen=True)
class PeerConfig:
    """A peer's address and the files that protect the channel to it.

    ``origin``: the setting that named ``target`` (``ca.target in DIR/merchant.toml``, an
    environment variable, an option), which a failed call names with the address so that
    its user knows where to change it; not part of the peer (two configurations naming
    the same peer are equal).
    """

    target: str
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    origin: str = field(default="", compare=False)

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], where: str, base_dir: Path, source: Path | None = None
    ) -> PeerConfig:
        """Read a peer table; relative paths are relative to ``base_dir``. ``source``: the
        file the table is in, named with the target when a call to it fails."""

        def path(key: str) -> Path | None:
            text = get(table, key, str, None, where)
            if text is None:
                return None
            p = Path(text)
            return p if p.is_absolute() else base_dir / p

        return cls(
            target=check_target(get(table, "target", str, "", where), f"{where}.target"),
            tls_ca=path("tls_ca"),
            tls_cert=path("tls_cert"),
            tls_key=path("tls_key"),
            insecure=get(table, "insecure", bool, False, where),
            origin=f"{where}.target" + (f" in {source}" if source is not None else ""),
        ).validated(where)

    def validated(self, where: str) -> PeerConfig:
        """Refuse a TLS peer without a CA file, or half a client certificate."""
        if not self.insecure and self.tls_ca is None:
            raise ConfigError(f"{where}.tls_ca is required unless {where}.insecure = true")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(f"{where}.tls_cert and {where}.tls_key go together")
        return self

    def with_target(self, target: str, where: str) -> PeerConfig:
        """The same peer at another address, named by ``where`` (an environment variable,
        an option)."""
        return replace(self, target=check_target(target, where), origin=where)

    def channel(self) -> ChannelConfig:
        """The channel configuration, reading the PEM files now."""

        def read(p: Path | None) -> bytes | None:
            if p is None:
                return None
            try:
                return p.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {p}: {exc.strerror}") from exc

        return ChannelConfig(
            target=self.target,
            ca_pem=None if self.insecure else read(self.tls_ca),
            client_cert_pem=None if self.insecure else read(self.tls_cert),
            client_key_pem=None if self.insecure else read(self.tls_key),
            insecure=self.insecure,
            origin=self.origin,
        )


def toml_table(name: str, values: Mapping[str, object]) -> str:
    """A TOML table of strings, integers and booleans (None values left out)."""
    lines = [f"[{name}]"]
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            # JSON string escapes are valid TOML basic-string escapes.
            text = json.dumps(str(value))
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def peer_table(name: str, peer: PeerConfig, base_dir: Path) -> str:
    """The TOML table of a peer, paths relative to ``base_dir`` where possible."""

    def rel(p: Path | None) -> str | None:
        if p is None:
            return None
        return str(p.relative_to(base_dir)) if p.is_relative_to(base_dir) else str(p)

    return toml_table(
        name,
        {
            "target": peer.target,
            "tls_ca": rel(peer.tls_ca),
            "tls_cert": rel(peer.tls_cert),
            "tls_key": rel(peer.tls_key),
            "insecure": peer.insecure,
        },
    )
