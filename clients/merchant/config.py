"""The merchant's configuration: ``merchant.toml`` in the merchant directory plus
``SETPAY_MERCHANT_*`` environment variables.

Loaded once at start, validated, passed down as a frozen dataclass. Relative paths are
relative to the merchant directory. The environment overrides the file:
``SETPAY_MERCHANT_ID``, ``SETPAY_MERCHANT_KEYS``, ``SETPAY_MERCHANT_LISTEN``,
``SETPAY_MERCHANT_GATEWAY`` and ``SETPAY_MERCHANT_CA`` (targets), ``SETPAY_MERCHANT_ANSWER``;
``setpay merchant serve --metrics-port`` overrides both (``with_metrics_port``).
A table or key the file may not hold is refused, naming the file and the key
(``clients.config_file``), as is a file that is not UTF-8. Each value is checked where
it is read, and a refusal names the file's key or the variable it came from; the file's
``merchant.id`` alone is checked only when ``SETPAY_MERCHANT_ID`` does not replace it.

Example::

    [merchant]
    id = "m-0001"
    name = "Corner Shop"
    brand = "setpay"
    keys = "soft:keys"                 # key URI: labels merchant-sig and merchant-kex
    answer = "after-authorization"     # or "order-received"
    root = "certs/root.pem"            # the brand root, pinned, placed here out of band
    chain = "certs/chain.pem"          # the Merchant CA certificate (written by register)
    store = "merchant.db"              # orders and settlement (SQLite)
    currency = 978                     # ISO 4217 numeric: of new orders (``orders new``)

    [server]                           # the Merchant service for wallets
    listen = "127.0.0.1:8443"
    tls_cert = "tls/server.pem"
    tls_key = "tls/server.key"
    insecure = false
    threads = 8                        # DEFAULT_THREADS
    max_concurrent_rpcs = 16           # threads + DEFAULT_BACKLOG by default, then shed
    metrics_port = 9465                # Prometheus page (``clients.merchant.metrics``); 0
                                       # (the default) turns it off; "any": a port the OS
                                       # picks (``serve`` prints it)
    metrics_host = "127.0.0.1"         # loopback unless the scraper runs elsewhere

    [gateway]                          # mutual TLS
    target = "127.0.0.1:7443"
    tls_ca = "tls/ca.pem"
    tls_cert = "tls/client.pem"
    tls_key = "tls/client.key"

    [ca]                               # the bank's CertificateAuthority port
    target = "127.0.0.1:7444"
    tls_ca = "tls/ca.pem"
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from clients import config_file
from clients.config_file import PEER_KEYS, check_keys
from clients.errors import ConfigError
from clients.identity import resolve_key_uri
from clients.peers import (
    MAX_PORT,
    PeerConfig,
    check_target,
    get,
    peer_table,
    subtable,
    toml_table,
)
from setcore.currency import why_refused
from setcore.names import describe, refused_character
from setcore.pki.extensions import MAX_MERCHANT_NAME_CHARS

CONFIG_FILE = "merchant.toml"
# Server threads. In after-authorization mode a Purchase holds its thread while it waits
# on the gateway (at most until its wallet's deadline, ``servicer``), so a few more
# threads than cores keep PInit and Inquiry answered while authorizations are in flight.
DEFAULT_THREADS = 8
# Calls in flight (running or queued for a thread) before new ones are shed with a retry
# delay (``setcore.admission``), unless ``server.max_concurrent_rpcs`` says otherwise: the
# configured threads, whatever their number, and a backlog of DEFAULT_BACKLOG that a PInit
# or Inquiry, milliseconds each, gets through quickly (the Purchases waiting on the
# gateway never hold every thread: ``checkout.gateway_waits``). A deeper queue only holds
# calls its wallets give up on: an immediate "retry shortly" serves them better.
DEFAULT_BACKLOG = 8
# ``max_concurrent_rpcs``'s default at the default threads (``default_max_concurrent_rpcs``).
DEFAULT_MAX_CONCURRENT_RPCS = DEFAULT_THREADS + DEFAULT_BACKLOG
# Server threads at most: far more than a shop front keeps busy, each one a stack of its
# own, and it catches a typo that would start thousands.
MAX_THREADS = 256
# Calls in flight at most: each holds a queue slot and its buffers; a typo stops here.
MAX_CONCURRENT_RPCS_LIMIT = 10_000
# ``server.metrics_port`` for "serve metrics on a port the OS picks", as port 0 is for
# ``listen``: 0 itself means "no metrics", as for the bank's ``gateway.metrics_port``.
METRICS_ANY_PORT: Literal["any"] = "any"
MetricsPort = int | Literal["any"]
# The metrics page shows what the merchant is doing to whoever can reach it: loopback
# unless the operator names another address.
DEFAULT_METRICS_HOST = "127.0.0.1"
_METRICS_PORT = re.compile(r"[0-9]{1,5}")  # ASCII only: int() would take fullwidth digits
# The currency of an order ``orders new`` makes without ``--currency``, unless
# ``merchant.currency`` names another: it must be the merchant's settlement account's
# (the bank's ``[ledger] settlement_currency``), or every authorization of it is
# declined CURRENCY_MISMATCH. EUR, as the bank's own default.
DEFAULT_CURRENCY = 978
# Merchant ids become a certificate CommonName (ub-common-name 64).
_MERCHANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Every table and key merchant.toml may hold; anything else is refused (``answr =`` would
# otherwise leave the default answer mode in force without a word).
_TABLES: dict[str, frozenset[str]] = {
    "merchant": frozenset(
        {"id", "name", "brand", "keys", "answer", "root", "chain", "store", "currency"}
    ),
    "server": frozenset(
        {"listen", "tls_cert", "tls_key", "insecure", "threads", "max_concurrent_rpcs"}
        | {"metrics_port", "metrics_host"}
    ),
    "gateway": PEER_KEYS,
    "ca": PEER_KEYS,
}


class AnswerMode(enum.StrEnum):
    """When the merchant answers a purchase request."""

    #: Authorize first; PRes reports the gateway's decision.
    AFTER_AUTHORIZATION = "after-authorization"
    #: Answer "order received" at once; authorize in the background; Inquiry tells the rest.
    ORDER_RECEIVED = "order-received"


@dataclass(frozen=True)
class ServerConfig:
    """The Merchant service's listening side."""

    listen: str
    tls_cert: Path | None
    tls_key: Path | None
    insecure: bool = False
    threads: int = DEFAULT_THREADS
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    #: The Prometheus page's port: 0 off, ``METRICS_ANY_PORT`` one the OS picks.
    metrics_port: MetricsPort = 0
    metrics_host: str = DEFAULT_METRICS_HOST


def parse_metrics_port(text: str) -> MetricsPort:
    """A metrics port as written on the command line: ASCII digits, 0 to 65535, or
    ``any`` (in any case, spaces around it allowed); ``ValueError`` for anything else."""
    if text.strip().lower() == METRICS_ANY_PORT:
        return METRICS_ANY_PORT
    if not _METRICS_PORT.fullmatch(text) or int(text) > MAX_PORT:
        raise ValueError(text)
    return int(text)


def _metrics_port(table: Mapping[str, Any]) -> MetricsPort:
    """The file's metrics port: an integer 0 to 65535, or the string ``any``."""
    given = table.get("metrics_port", 0)
    if isinstance(given, str) and given.strip().lower() == METRICS_ANY_PORT:
        return METRICS_ANY_PORT
    if isinstance(given, bool) or not isinstance(given, int):
        found = type(given).__name__
        raise ConfigError(f'server.metrics_port must be int or "{METRICS_ANY_PORT}", not {found}')
    if not 0 <= given <= MAX_PORT:
        raise ConfigError(
            f"server.metrics_port must be between 0 (off) and {MAX_PORT}, or {METRICS_ANY_PORT!r}"
        )
    return given


@dataclass(frozen=True)
class MerchantConfig:
    """Everything the merchant process needs, validated."""

    base_dir: Path
    merchant_id: str
    name: str
    brand_id: str
    keys: str
    answer: AnswerMode
    root: Path
    chain: Path
    server: ServerConfig
    gateway: PeerConfig
    ca: PeerConfig
    store: Path
    #: The ISO 4217 numeric code of new orders (``merchant.currency``).
    currency: int = DEFAULT_CURRENCY

    def keys_uri(self) -> str:
        """The key URI, its relative paths (``soft:DIR``, ``pin-source=file:PATH``)
        resolved against the merchant directory."""
        return resolve_key_uri(self.keys, self.base_dir)

    def with_metrics_port(self, port: MetricsPort) -> MerchantConfig:
        """The same configuration with ``server.metrics_port`` replaced (a command's flag,
        read by ``parse_metrics_port``)."""
        return replace(self, server=replace(self.server, metrics_port=port))


def _path(base_dir: Path, text: str) -> Path:
    p = Path(text)
    return p if p.is_absolute() else base_dir / p


def _name(table: Mapping[str, Any]) -> str:
    """The merchant's name, empty for the merchant ID in its place. The Merchant CA
    refuses a longer one, or one holding a character no name holds (``setcore.names``),
    but only when ``register`` asks it: said here, at start."""
    name: str = get(table, "name", str, "", "merchant")
    if len(name) > MAX_MERCHANT_NAME_CHARS:
        raise ConfigError(
            f"merchant.name must be at most {MAX_MERCHANT_NAME_CHARS} characters, not {len(name)}"
        )
    refused = refused_character(name)
    if refused is not None:
        raise ConfigError(
            f"merchant.name holds {describe(refused)}, which the Merchant CA refuses in a name"
        )
    return name


def _currency(table: Mapping[str, Any]) -> int:
    """``merchant.currency``: a currency ISO 4217 lists now, with a minor unit, as the
    bank's accounts are kept in (``setcore.currency``)."""
    currency: int = get(table, "currency", int, DEFAULT_CURRENCY, "merchant")
    refused = why_refused(currency)
    if refused is not None:
        raise ConfigError(f"merchant.currency: {refused}")
    return currency


def _table(raw: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    return subtable(raw, key, path) or {}


def default_max_concurrent_rpcs(threads: int) -> int:
    """``server.max_concurrent_rpcs`` when merchant.toml leaves it out: ``threads`` and
    the backlog (``DEFAULT_BACKLOG``), so that more threads admit more calls."""
    return threads + DEFAULT_BACKLOG


def _server(table: Mapping[str, Any], base_dir: Path) -> ServerConfig:
    cert = get(table, "tls_cert", str, None, "server")
    key = get(table, "tls_key", str, None, "server")
    threads: int = get(table, "threads", int, DEFAULT_THREADS, "server")
    config = ServerConfig(
        listen=check_target(get(table, "listen", str, "127.0.0.1:8443", "server"), "server.listen"),
        tls_cert=_path(base_dir, cert) if cert else None,
        tls_key=_path(base_dir, key) if key else None,
        insecure=get(table, "insecure", bool, False, "server"),
        threads=threads,
        max_concurrent_rpcs=get(
            table, "max_concurrent_rpcs", int, default_max_concurrent_rpcs(threads), "server"
        ),
        metrics_port=_metrics_port(table),
        metrics_host=get(table, "metrics_host", str, DEFAULT_METRICS_HOST, "server").strip(),
    )
    if not config.insecure and (config.tls_cert is None or config.tls_key is None):
        raise ConfigError("server.tls_cert and server.tls_key are required unless insecure")
    if not 1 <= config.threads <= MAX_THREADS:
        raise ConfigError(f"server.threads must be 1..{MAX_THREADS}, not {config.threads}")
    if not 1 <= config.max_concurrent_rpcs <= MAX_CONCURRENT_RPCS_LIMIT:
        raise ConfigError(
            f"server.max_concurrent_rpcs must be 1..{MAX_CONCURRENT_RPCS_LIMIT}, not "
            f"{config.max_concurrent_rpcs}"
        )
    if not config.metrics_host:
        raise ConfigError("server.metrics_host must name an address")
    return config


def _env_overrides(config: MerchantConfig, env: Mapping[str, str]) -> MerchantConfig:
    changes: dict[str, Any] = {}
    if "SETPAY_MERCHANT_ID" in env:
        changes["merchant_id"] = _merchant_id(env["SETPAY_MERCHANT_ID"], "SETPAY_MERCHANT_ID")
    if "SETPAY_MERCHANT_KEYS" in env:
        changes["keys"] = check_keys(env["SETPAY_MERCHANT_KEYS"], "SETPAY_MERCHANT_KEYS")
    if "SETPAY_MERCHANT_ANSWER" in env:
        changes["answer"] = _answer(env["SETPAY_MERCHANT_ANSWER"], "SETPAY_MERCHANT_ANSWER")
    if "SETPAY_MERCHANT_LISTEN" in env:
        listen = check_target(env["SETPAY_MERCHANT_LISTEN"], "SETPAY_MERCHANT_LISTEN")
        changes["server"] = replace(config.server, listen=listen)
    if "SETPAY_MERCHANT_GATEWAY" in env:
        target = env["SETPAY_MERCHANT_GATEWAY"]
        changes["gateway"] = config.gateway.with_target(target, "SETPAY_MERCHANT_GATEWAY")
    if "SETPAY_MERCHANT_CA" in env:
        changes["ca"] = config.ca.with_target(env["SETPAY_MERCHANT_CA"], "SETPAY_MERCHANT_CA")
    return replace(config, **changes)


def _answer(text: str, what: str) -> AnswerMode:
    """The answer mode ``text`` names; ``what``: the key or variable it came from."""
    try:
        return AnswerMode(text)
    except ValueError:
        modes = ", ".join(m.value for m in AnswerMode)
        raise ConfigError(f"{what} must be one of {modes}, not {text!r}") from None


def _merchant_id(text: str, what: str) -> str:
    """``text`` if it is a merchant ID; ``what``: the key or variable it came from."""
    if not _MERCHANT_ID.fullmatch(text):
        raise ConfigError(f"{what} must be 1..64 letters, digits, '.', '_' or '-'")
    return text


def validate(config: MerchantConfig) -> MerchantConfig:
    """Refuse inconsistent settings with a message naming the setting."""
    _merchant_id(config.merchant_id, "merchant.id")
    if not config.brand_id:
        raise ConfigError("merchant.brand is required")
    check_keys(config.keys, "merchant.keys")
    return config


def load(directory: Path, env: Mapping[str, str] | None = None) -> MerchantConfig:
    """Load ``directory/merchant.toml``, apply the environment, validate."""
    path = directory / CONFIG_FILE
    raw = config_file.read(path, "merchant")
    config_file.refuse_unknown(raw, _TABLES, path)
    base = directory.resolve()
    m = _table(raw, "merchant", path)
    config = MerchantConfig(
        base_dir=base,
        merchant_id=get(m, "id", str, "", "merchant"),
        name=_name(m),
        brand_id=get(m, "brand", str, "setpay", "merchant"),
        keys=check_keys(get(m, "keys", str, "soft:keys", "merchant"), "merchant.keys"),
        answer=_answer(
            get(m, "answer", str, AnswerMode.AFTER_AUTHORIZATION.value, "merchant"),
            "merchant.answer",
        ),
        root=_path(base, get(m, "root", str, "certs/root.pem", "merchant")),
        chain=_path(base, get(m, "chain", str, "certs/chain.pem", "merchant")),
        server=_server(_table(raw, "server", path), base),
        gateway=PeerConfig.from_table(_table(raw, "gateway", path), "gateway", base, path),
        ca=PeerConfig.from_table(_table(raw, "ca", path), "ca", base, path),
        store=_path(base, get(m, "store", str, "merchant.db", "merchant")),
        currency=_currency(m),
    )
    return validate(_env_overrides(config, os.environ if env is None else env))


def write_config(
    directory: Path,
    *,
    merchant_id: str,
    name: str,
    gateway: PeerConfig,
    ca: PeerConfig,
    brand_id: str = "setpay",
    keys: str = "soft:keys",
    answer: AnswerMode = AnswerMode.AFTER_AUTHORIZATION,
    listen: str = "127.0.0.1:8443",
    tls_cert: str | None = "tls/server.pem",
    tls_key: str | None = "tls/server.key",
    insecure: bool = False,
    currency: int | None = None,
) -> Path:
    """Write ``directory/merchant.toml`` (for the demo and tests); ``currency``, written
    as ``merchant.currency``, left out when None (the default's)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory.resolve()
    text = "\n".join(
        (
            toml_table(
                "merchant",
                {
                    "id": merchant_id,
                    "name": name,
                    "brand": brand_id,
                    "keys": keys,
                    "answer": answer.value,
                    "currency": currency,
                },
            ),
            toml_table(
                "server",
                {
                    "listen": listen,
                    "tls_cert": None if insecure else tls_cert,
                    "tls_key": None if insecure else tls_key,
                    "insecure": insecure,
                },
            ),
            peer_table("gateway", gateway, base),
            peer_table("ca", ca, base),
        )
    )
    path = directory / CONFIG_FILE
    path.write_text(text)
    return path
