"""The bank's configuration: one TOML file plus ``SETPAY_*`` environment variables.

Loaded once at start, validated, and passed down explicitly as a frozen dataclass; no
module-level settings. Relative paths in the file are relative to the file's directory.
Environment variables override the file (``SETPAY_LISTEN``, ``SETPAY_CA_LISTEN``,
``SETPAY_KEYS``, ``SETPAY_LEDGER``, ``SETPAY_WORKERS``, ``SETPAY_THREADS``,
``SETPAY_METRICS_PORT``, ``SETPAY_METRICS_HOST``, ``SETPAY_REFLECTION``,
``SETPAY_SCHEDULING``, ``SETPAY_LEDGER_SERVICE``).

Example (``setpay init`` writes one)::

    [bank]
    profile = "ec"
    brand_id = "setpay"
    keys = "soft:keys"            # key URI; secrets come from env or a pin-source file

    [gateway]
    listen = "127.0.0.1:7443"     # PaymentGateway, mutual TLS
    ca_listen = "127.0.0.1:7444"  # CertificateAuthority, server TLS
    workers = 2                   # worker processes; default: the CPUs this process may use
    metrics_port = 9464           # Prometheus scrape port; 0 (the default) turns metrics off
    metrics_host = "127.0.0.1"    # loopback unless the scraper runs elsewhere
    reflection = true
    insecure = false              # plaintext gRPC: local experiments only
    scheduling = "batch"          # workers' CPU policy: "batch" (SCHED_BATCH) or "normal"

    [ledger]
    store = "sqlite:ledger.db"    # or a postgresql:// URL
    service = false               # SQLite: true has one ledger process commit for all workers
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.ledger.ledger import LedgerConfig
from gateway.ledger.limits import MAX_HOLD_LIFETIME_MS
from gateway.scheduling import DEFAULT_POLICY, POLICIES

CONFIG_FILE = "setpay.toml"
# gRPC's own default is 4 MB; SET messages with a few certificate chains stay far below
# 1 MB, so 1 MB leaves room without letting a peer make us buffer more.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
# Requests in flight per worker before new ones get RESOURCE_EXHAUSTED: enough to keep two
# cores busy through a ledger commit, small enough to bound memory and queueing delay.
DEFAULT_MAX_CONCURRENT_RPCS = 256
# Server threads per worker: crypto releases the GIL, so a few threads keep a core busy.
DEFAULT_THREADS = 8
# An authorization hold is released if not captured within this time (7 days, a common
# card-scheme hold period).
DEFAULT_HOLD_EXPIRY_MS = 7 * 24 * 3600 * 1000
# SIGTERM: in-flight calls get this long to finish before the server stops.
DEFAULT_GRACE_SECONDS = 5.0
# Worker processes at most: far beyond the cores of one gateway host, and it bounds the
# key-backend sessions and database connections one bank opens.
MAX_WORKERS = 64
# Whether a SQLite ledger is written by one ledger process for all workers
# (gateway.ledger_process) rather than by a writer thread in each worker. Off by default:
# measured side by side, neither was faster (docs/BENCHMARKS-HISTORY.md, fourth round).
DEFAULT_LEDGER_SERVICE = False
# Metrics are for the operator's own scraper: served on loopback unless configured.
DEFAULT_METRICS_HOST = "127.0.0.1"


def default_workers() -> int:
    """One worker per CPU this process may run on (at most MAX_WORKERS)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no affinity call
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


class ConfigError(ValueError):
    """The configuration is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the gateway's TLS server side (and the CA that signs client certs)."""

    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True)
class BankConfig:
    """Everything the bank processes need, validated."""

    base_dir: Path
    profile: str = "ec"
    brand_id: str = "setpay"
    keys: str = "soft:keys"
    listen: str = "127.0.0.1:7443"
    ca_listen: str = "127.0.0.1:7444"
    workers: int = field(default_factory=default_workers)
    threads: int = DEFAULT_THREADS
    reflection: bool = True
    insecure: bool = False
    metrics_port: int = 0
    metrics_host: str = DEFAULT_METRICS_HOST
    ledger: str = "sqlite:ledger.db"
    ledger_service: bool = DEFAULT_LEDGER_SERVICE
    ca_db: Path = field(default=Path("ca.db"))
    certs_dir: Path = field(default=Path("certs"))
    ledger_keys: Path = field(default=Path("ledger.keys"))
    tls: TlsFiles | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    hold_expiry_ms: int = DEFAULT_HOLD_EXPIRY_MS
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    scheduling: str = DEFAULT_POLICY

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the configuration's directory."""
        return p if p.is_absolute() else self.base_dir / p

    def keys_uri(self) -> str:
        """The key URI, with a relative ``soft:DIR`` resolved against the base directory."""
        if self.keys.startswith("soft:") and not self.keys.startswith("soft:ephemeral"):
            rest = self.keys[len("soft:") :]
            directory, sep, params = rest.partition(";")
            if not Path(directory).is_absolute():
                return f"soft:{self.base_dir / directory}{sep}{params}"
        return self.keys

    def uses_ledger_service(self) -> bool:
        """Whether workers reach the ledger through a ledger process (SQLite only: every
        PostgreSQL connection already goes to a server of its own)."""
        return self.ledger_service and self.ledger.startswith("sqlite:")

    def ledger_url(self) -> str:
        """The ledger store URL, with a relative SQLite path resolved."""
        if self.ledger.startswith("sqlite:"):
            p = Path(self.ledger[len("sqlite:") :])
            return f"sqlite:{self.path(p)}"
        return self.ledger


def _get(table: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {kind.__name__}, not {type(value).__name__}")
    return value


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _env_overrides(config: BankConfig, env: Mapping[str, str]) -> BankConfig:
    changes: dict[str, Any] = {}
    if "SETPAY_LISTEN" in env:
        changes["listen"] = env["SETPAY_LISTEN"]
    if "SETPAY_CA_LISTEN" in env:
        changes["ca_listen"] = env["SETPAY_CA_LISTEN"]
    if "SETPAY_KEYS" in env:
        changes["keys"] = env["SETPAY_KEYS"]
    if "SETPAY_LEDGER" in env:
        changes["ledger"] = env["SETPAY_LEDGER"]
    if "SETPAY_METRICS_HOST" in env:
        changes["metrics_host"] = env["SETPAY_METRICS_HOST"]
    if "SETPAY_SCHEDULING" in env:
        changes["scheduling"] = env["SETPAY_SCHEDULING"]
    for name, attr in (
        ("SETPAY_WORKERS", "workers"),
        ("SETPAY_THREADS", "threads"),
        ("SETPAY_METRICS_PORT", "metrics_port"),
    ):
        if name in env:
            try:
                changes[attr] = int(env[name])
            except ValueError:
                raise ConfigError(f"{name} must be an integer") from None
    for name, attr in (
        ("SETPAY_REFLECTION", "reflection"),
        ("SETPAY_LEDGER_SERVICE", "ledger_service"),
    ):
        if name in env:
            flag = env[name].lower()
            if flag not in _TRUE | _FALSE:
                raise ConfigError(f"{name} must be one of {', '.join(sorted(_TRUE | _FALSE))}")
            changes[attr] = flag in _TRUE
    return replace(config, **changes)


def validate(config: BankConfig) -> BankConfig:
    """Refuse inconsistent settings with a message naming the setting."""
    if config.profile not in {"ec", "rsa"}:
        raise ConfigError(f"profile must be ec or rsa, not {config.profile!r}")
    for name, value in (("listen", config.listen), ("ca_listen", config.ca_listen)):
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"{name} must be HOST:PORT, not {value!r}")
    if not 1 <= config.workers <= MAX_WORKERS:
        raise ConfigError(f"workers must be between 1 and {MAX_WORKERS}")
    if not 0 <= config.metrics_port <= 65535:
        raise ConfigError("metrics_port must be between 0 (off) and 65535")
    if not config.metrics_host:
        raise ConfigError("metrics_host must name an address")
    if config.scheduling not in POLICIES:
        raise ConfigError(f"scheduling must be one of {', '.join(POLICIES)}")
    if not 1 <= config.threads <= 256:
        raise ConfigError("threads must be between 1 and 256")
    if not config.insecure and config.tls is None:
        raise ConfigError("TLS files are required unless insecure = true")
    if not config.ledger.startswith(("sqlite:", "postgresql://", "postgres://")):
        raise ConfigError("ledger.store must be sqlite:PATH or a postgresql:// URL")
    try:
        LedgerConfig(hold_lifetime_ms=config.hold_expiry_ms)  # the ledger's own rule
    except ValueError:
        raise ConfigError(
            f"ledger.hold_expiry_ms must be between 1 and {MAX_HOLD_LIFETIME_MS}"
        ) from None
    return config


def load(path: Path, env: Mapping[str, str] | None = None) -> BankConfig:
    """Load, override from the environment, and validate a configuration file."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no configuration file at {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    bank = raw.get("bank", {})
    gw = raw.get("gateway", {})
    ledger = raw.get("ledger", {})
    tls_table = gw.get("tls")
    tls = None
    if tls_table is not None:
        tls = TlsFiles(
            cert=Path(_get(tls_table, "cert", str, "")),
            key=Path(_get(tls_table, "key", str, "")),
            client_ca=Path(_get(tls_table, "client_ca", str, "")),
        )
    config = BankConfig(
        base_dir=path.parent.resolve(),
        profile=_get(bank, "profile", str, "ec"),
        brand_id=_get(bank, "brand_id", str, "setpay"),
        keys=_get(bank, "keys", str, "soft:keys"),
        listen=_get(gw, "listen", str, "127.0.0.1:7443"),
        ca_listen=_get(gw, "ca_listen", str, "127.0.0.1:7444"),
        workers=_get(gw, "workers", int, default_workers()),
        threads=_get(gw, "threads", int, DEFAULT_THREADS),
        reflection=_get(gw, "reflection", bool, True),
        insecure=_get(gw, "insecure", bool, False),
        metrics_port=_get(gw, "metrics_port", int, 0),
        metrics_host=_get(gw, "metrics_host", str, DEFAULT_METRICS_HOST),
        max_message_bytes=_get(gw, "max_message_bytes", int, DEFAULT_MAX_MESSAGE_BYTES),
        max_concurrent_rpcs=_get(gw, "max_concurrent_rpcs", int, DEFAULT_MAX_CONCURRENT_RPCS),
        scheduling=_get(gw, "scheduling", str, DEFAULT_POLICY),
        hold_expiry_ms=_get(ledger, "hold_expiry_ms", int, DEFAULT_HOLD_EXPIRY_MS),
        ledger=_get(ledger, "store", str, "sqlite:ledger.db"),
        ledger_service=_get(ledger, "service", bool, DEFAULT_LEDGER_SERVICE),
        tls=tls,
    )
    if config.tls is not None:
        t = config.tls
        config = replace(
            config,
            tls=TlsFiles(config.path(t.cert), config.path(t.key), config.path(t.client_ca)),
        )
    return validate(_env_overrides(config, os.environ if env is None else env))
