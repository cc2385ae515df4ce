"""The bank's configuration: one TOML file plus ``SETPAY_*`` environment variables.

Loaded once at start, validated, and passed down explicitly as a frozen dataclass; no
module-level settings. Relative paths in the file are relative to the file's directory.
Environment variables override the file (``SETPAY_LISTEN``, ``SETPAY_CA_LISTEN``,
``SETPAY_KEYS``, ``SETPAY_LEDGER``, ``SETPAY_WORKERS``, ``SETPAY_THREADS``,
``SETPAY_METRICS_PORT``, ``SETPAY_METRICS_HOST``, ``SETPAY_REFLECTION``,
``SETPAY_SCHEDULING``, ``SETPAY_LEDGER_SERVICE``, ``SETPAY_GRACE_SECONDS``,
``SETPAY_NOT_SERVING_SECONDS``; ``gateway.environment``), and a command's flags override
both (``load``'s ``overrides``).

A refusal names where the value came from: the file and the key (``setpay.toml:
gateway.workers must be ...``), the environment variable (``SETPAY_WORKERS: ...``), or
the flag (``--workers: ...``); every setting is judged once, after all of them are in.
An unknown key or table is refused, not ignored: a misspelled setting would otherwise
leave its default in force unnoticed. Values that may hold a secret (the ledger URL, the
key URI) are never repeated in a message.

Example (``setpay init`` writes one)::

    [bank]
    profile = "ec"
    brand_id = "setpay"
    keys = "soft:keys"            # key URI; secrets come from env or a pin-source file

    [gateway]
    listen = "127.0.0.1:7443"     # PaymentGateway, mutual TLS
    ca_listen = "127.0.0.1:7444"  # CertificateAuthority, server TLS
    workers = 2                   # worker processes; default: the CPUs this process may use
    metrics_port = 9464           # Prometheus scrape port; 0 (the default) turns metrics off;
                                  # "any": a port the OS picks (the port file says which)
    metrics_host = "127.0.0.1"    # loopback unless the scraper runs elsewhere
    reflection = true
    insecure = false              # plaintext gRPC: local experiments only
    scheduling = "batch"          # workers' CPU policy: "batch" (SCHED_BATCH) or "normal"
    not_serving_seconds = 1       # SIGTERM: health says NOT_SERVING this long first
    grace_seconds = 5             # then how long calls in flight may take to finish

    [ledger]
    store = "sqlite:ledger.db"    # or a postgresql:// URL
    service = false               # SQLite: true has one ledger process commit for all workers
    prepare_statements = false    # PostgreSQL: true prepares statements (faster); no pooler
    settlement_currency = 978     # ISO 4217 numeric code of merchant accounts the CA opens
    retention_days = 400          # stored answers and dead XIDs older than this are pruned
"""

from __future__ import annotations

import os
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.cpu_quota import CGROUP_ROOT, cgroup_cpus
from gateway.environment import (
    METRICS_ANY_PORT,
    MetricsPort,
    environment_overrides,
    means_any_port,
)
from gateway.ledger.ledger import LedgerConfig
from gateway.ledger.limits import MAX_HOLD_LIFETIME_MS
from gateway.ledger.retention import DEFAULT_RETENTION_DAYS, check_retention_days
from gateway.ports import MAX_PORT, parse_port
from gateway.scheduling import DEFAULT_POLICY, POLICIES
from hsm.uri import encode_uri_value
from setcore.currency import why_refused

CONFIG_FILE = "setpay.toml"
# gRPC's own default is 4 MB; SET messages with a few certificate chains stay far below
# 1 MB, so 1 MB leaves room without letting a peer make us buffer more.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
# The largest message limit a bank may configure: far above any SET message, and it keeps
# a typo from lifting the bound (gRPC reads -1 as "no limit").
MAX_MESSAGE_BYTES_LIMIT = 64 << 20
# Requests in flight per worker before new ones get RESOURCE_EXHAUSTED: enough to keep two
# cores busy through a ledger commit, small enough to bound memory and queueing delay.
DEFAULT_MAX_CONCURRENT_RPCS = 256
# In-flight requests per worker at most: each holds a thread's queue slot and its buffers.
MAX_CONCURRENT_RPCS_LIMIT = 10_000
# Server threads per worker: crypto releases the GIL, so a few threads keep a core busy.
DEFAULT_THREADS = 8
# Server threads per worker at most: far more than keep a core busy, each one a stack of
# its own, and it catches a typo that would have a worker start thousands.
MAX_THREADS = 256
# An authorization hold is released if not captured within this time (7 days, a common
# card-scheme hold period).
DEFAULT_HOLD_EXPIRY_MS = 7 * 24 * 3600 * 1000
# SIGTERM: in-flight calls get this long to finish before the server stops.
DEFAULT_GRACE_SECONDS = 5.0
# The longest grace period a bank may configure (5 minutes). A slow token makes a call
# take seconds, not minutes: a call still running after five minutes is stuck, and waiting
# longer only delays the stop. It also catches milliseconds written for seconds (5000
# would hold a stop for over an hour). An orchestrator's stop timeout must exceed the
# NOT_SERVING notice, the grace period and the workers' closing margin together
# (``gateway.child_deadlines.STOP_MARGIN_SECONDS``).
MAX_GRACE_SECONDS = 300.0
# SIGTERM: how long a worker's health answers NOT_SERVING, its calls still served, before
# the grace period begins. gRPC refuses new connections once a server stops, so without it
# a load balancer polling health Check would see "connection refused", never NOT_SERVING
# (only open Watch streams are told); set it to the balancer's check interval. 0 skips it.
DEFAULT_NOT_SERVING_SECONDS = 1.0
# The longest such notice: longer than any balancer's health check interval, and it too
# catches milliseconds written for seconds.
MAX_NOT_SERVING_SECONDS = 60.0
# Worker processes at most: far beyond the cores of one gateway host, and it bounds the
# key-backend sessions and database connections one bank opens.
MAX_WORKERS = 64
# Whether a SQLite ledger is written by one ledger process for all workers
# (gateway.ledger_process) rather than by a writer thread in each worker. Off by default:
# measured side by side, neither was faster (docs/BENCHMARKS-HISTORY.md, fourth round).
DEFAULT_LEDGER_SERVICE = False
# Server-side prepared statements for a PostgreSQL ledger: faster, unsafe behind a pooler.
DEFAULT_PREPARE_STATEMENTS = False
# The currency of the settlement account opened for each merchant the CA registers (ISO
# 4217 numeric, EUR). It must be the currency of the bank's cards: an authorization whose
# card and merchant accounts differ in currency is declined (CURRENCY_MISMATCH).
DEFAULT_SETTLEMENT_CURRENCY = 978
# Metrics are for the operator's own scraper: served on loopback unless configured.
DEFAULT_METRICS_HOST = "127.0.0.1"


def default_workers(root: Path = CGROUP_ROOT) -> int:
    """One worker per CPU this process may run on: its affinity, cut to its cgroup CPU
    quota (``gateway.cpu_quota``; at most MAX_WORKERS)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no affinity call
        cpus = os.cpu_count() or 1
    quota = cgroup_cpus(root)
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, min(cpus, MAX_WORKERS))


class ConfigError(ValueError):
    """The configuration is missing, malformed or inconsistent.

    ``setting`` is the ``BankConfig`` field a validation refused (None otherwise), so
    that ``load`` can say whether the file or an environment variable gave the value.
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


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
    metrics_port: MetricsPort = 0
    metrics_host: str = DEFAULT_METRICS_HOST
    ledger: str = "sqlite:ledger.db"
    ledger_service: bool = DEFAULT_LEDGER_SERVICE
    ledger_prepare_statements: bool = DEFAULT_PREPARE_STATEMENTS
    settlement_currency: int = DEFAULT_SETTLEMENT_CURRENCY
    ca_db: Path = field(default=Path("ca.db"))
    certs_dir: Path = field(default=Path("certs"))
    ledger_keys: Path = field(default=Path("ledger.keys"))
    tls: TlsFiles | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    hold_expiry_ms: int = DEFAULT_HOLD_EXPIRY_MS
    retention_days: int = DEFAULT_RETENTION_DAYS
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    not_serving_seconds: float = DEFAULT_NOT_SERVING_SECONDS
    scheduling: str = DEFAULT_POLICY
    # The file this was loaded from (``load``), for the commands a refusal advises; None
    # for one built in code, whose file is taken as ``base_dir``'s CONFIG_FILE.
    config_file: Path | None = None

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the configuration's directory."""
        return p if p.is_absolute() else self.base_dir / p

    def keys_uri(self) -> str:
        """The key URI, with a relative ``soft:DIR`` resolved against the base directory."""
        if self.keys.startswith("soft:") and not self.keys.startswith("soft:ephemeral"):
            rest = self.keys[len("soft:") :]
            directory, sep, params = rest.partition(";")
            if not Path(directory).is_absolute():
                # The base directory %-encoded: a ';' or '%' in it is part of the path.
                base = encode_uri_value(str(self.base_dir))
                return f"soft:{base}/{directory}{sep}{params}"
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


# Where each setting lives in the file, by BankConfig field: the table and the key.
_FILE_KEYS: dict[str, str] = {
    "profile": "bank.profile",
    "brand_id": "bank.brand_id",
    "keys": "bank.keys",
    "listen": "gateway.listen",
    "ca_listen": "gateway.ca_listen",
    "workers": "gateway.workers",
    "threads": "gateway.threads",
    "reflection": "gateway.reflection",
    "insecure": "gateway.insecure",
    "metrics_port": "gateway.metrics_port",
    "metrics_host": "gateway.metrics_host",
    "max_message_bytes": "gateway.max_message_bytes",
    "max_concurrent_rpcs": "gateway.max_concurrent_rpcs",
    "scheduling": "gateway.scheduling",
    "grace_seconds": "gateway.grace_seconds",
    "not_serving_seconds": "gateway.not_serving_seconds",
    "tls": "gateway.tls",
    "ledger": "ledger.store",
    "ledger_service": "ledger.service",
    "ledger_prepare_statements": "ledger.prepare_statements",
    "hold_expiry_ms": "ledger.hold_expiry_ms",
    "settlement_currency": "ledger.settlement_currency",
    "retention_days": "ledger.retention_days",
}
# Every table and key the file may hold; anything else is refused.
_TABLES: dict[str, frozenset[str]] = {
    "bank": frozenset({"profile", "brand_id", "keys"}),
    "gateway": frozenset(
        {key.partition(".")[2] for key in _FILE_KEYS.values() if key.startswith("gateway.")}
    ),
    "gateway.tls": frozenset({"cert", "key", "client_ca"}),
    "ledger": frozenset(
        {key.partition(".")[2] for key in _FILE_KEYS.values() if key.startswith("ledger.")}
    ),
}


def _table(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The table ``name`` (dotted: ``gateway.tls``), empty when absent; checked for
    unknown keys."""
    table: Mapping[str, Any] = raw
    for part in name.split("."):
        found = table.get(part, {})
        if not isinstance(found, dict):
            raise ConfigError(f"{name} must be a table, not {type(found).__name__}")
        table = found
    known = _TABLES[name]
    subtables = {t.rpartition(".")[2] for t in _TABLES if t.startswith(f"{name}.")}
    unknown = sorted(set(table) - known - subtables)
    if unknown:
        raise ConfigError(f"unknown setting {name}.{unknown[0]}")
    return table


def _get(table: Mapping[str, Any], where: str, key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{where}.{key} is required")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}.{key} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _number(table: Mapping[str, Any], where: str, key: str, default: float) -> float:
    """A number of the file, integer or not (``grace_seconds = 5`` as ``5.0``)."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key} must be a number, not {type(value).__name__}")
    return float(value)


def _host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and parse_port(port) is not None)


def _refuse(setting: str, rule: str) -> ConfigError:
    return ConfigError(f"{_FILE_KEYS[setting]} {rule}", setting)


def validate(config: BankConfig) -> BankConfig:
    """Refuse inconsistent settings with a message naming the setting."""
    if config.profile not in {"ec", "rsa"}:
        raise _refuse("profile", f"must be ec or rsa, not {config.profile!r}")
    for name in ("brand_id", "keys"):
        if not getattr(config, name):
            raise _refuse(name, "must not be empty")
    for name, value in (("listen", config.listen), ("ca_listen", config.ca_listen)):
        if not _host_port(value):
            raise _refuse(name, f"must be HOST:PORT (port 0 to {MAX_PORT}), not {value!r}")
    if not 1 <= config.workers <= MAX_WORKERS:
        raise _refuse("workers", f"must be between 1 and {MAX_WORKERS}")
    port = config.metrics_port
    if port != METRICS_ANY_PORT and not (isinstance(port, int) and 0 <= port <= MAX_PORT):
        raise _refuse(
            "metrics_port", f"must be between 0 (off) and {MAX_PORT}, or {METRICS_ANY_PORT!r}"
        )
    if not config.metrics_host:
        raise _refuse("metrics_host", "must name an address")
    if config.scheduling not in POLICIES:
        raise _refuse("scheduling", f"must be one of {', '.join(POLICIES)}")
    if not 1 <= config.threads <= MAX_THREADS:
        raise _refuse("threads", f"must be between 1 and {MAX_THREADS}")
    if not 1 <= config.max_message_bytes <= MAX_MESSAGE_BYTES_LIMIT:
        raise _refuse("max_message_bytes", f"must be between 1 and {MAX_MESSAGE_BYTES_LIMIT}")
    if not 1 <= config.max_concurrent_rpcs <= MAX_CONCURRENT_RPCS_LIMIT:
        raise _refuse("max_concurrent_rpcs", f"must be between 1 and {MAX_CONCURRENT_RPCS_LIMIT}")
    # Written so that NaN is refused too (every comparison with it is false).
    if not 0 < config.grace_seconds <= MAX_GRACE_SECONDS:
        raise _refuse(
            "grace_seconds", f"must be more than 0 and at most {MAX_GRACE_SECONDS:g} seconds"
        )
    if not 0 <= config.not_serving_seconds <= MAX_NOT_SERVING_SECONDS:
        raise _refuse(
            "not_serving_seconds", f"must be between 0 and {MAX_NOT_SERVING_SECONDS:g} seconds"
        )
    if not config.insecure and config.tls is None:
        raise _refuse("tls", "(cert, key, client_ca) is required unless gateway.insecure = true")
    if not config.ledger.startswith(("sqlite:", "postgresql://", "postgres://")):
        # Never the value: a database URL may carry a password.
        raise _refuse("ledger", "must be sqlite:PATH or a postgresql:// URL")
    unusable = _sqlite_refusal(config)
    if unusable is not None:
        raise _refuse("ledger", unusable)
    try:
        LedgerConfig(hold_lifetime_ms=config.hold_expiry_ms)  # the ledger's own rule
    except ValueError:
        raise _refuse("hold_expiry_ms", f"must be between 1 and {MAX_HOLD_LIFETIME_MS}") from None
    try:
        check_retention_days(config.retention_days)  # the ledger's own rule
    except ValueError as exc:
        raise _refuse("retention_days", str(exc)) from None
    refused = why_refused(config.settlement_currency)
    if refused is not None:
        raise _refuse(
            "settlement_currency",
            "must be the ISO 4217 numeric code of a currency with a minor unit (978 for EUR):"
            f" {refused}",
        )
    return config


def _sqlite_refusal(config: BankConfig) -> str | None:
    """Why a SQLite ledger's path can be no database file, naming it (None: it may be).
    Opened, a directory was "unavailable (SQLITE_IOERR_READ)", naming nothing."""
    if not config.ledger.startswith("sqlite:"):
        return None
    path = Path(config.ledger_url().removeprefix("sqlite:"))
    try:  # a place not searchable: the store's opening says so
        if path.is_file() or not path.exists():
            return None
        # A FIFO or a device too: SQLite would wait on one, or write into it.
        what = "the directory" if path.is_dir() else "the special file"
    except OSError:
        return None
    return f"must name the ledger's database file, not {what} {path}"


def _metrics_port(gw: Mapping[str, Any]) -> MetricsPort:
    """The file's metrics port: an integer, or a string that ``means_any_port``."""
    given = gw.get("metrics_port")
    if isinstance(given, str) and means_any_port(given):
        return METRICS_ANY_PORT
    try:
        port: int = _get(gw, "gateway", "metrics_port", int, 0)
    except ConfigError:
        found = type(gw["metrics_port"]).__name__
        raise ConfigError(
            f'gateway.metrics_port must be int or "{METRICS_ANY_PORT}", not {found}'
        ) from None
    return port


def _from_file(path: Path, raw: Mapping[str, Any]) -> BankConfig:
    """The file's settings, each checked for its type; relative paths resolved."""
    unknown = sorted(set(raw) - {name.partition(".")[0] for name in _TABLES})
    if unknown:
        raise ConfigError(f"unknown table [{unknown[0]}]")
    bank, gw, ledger = _table(raw, "bank"), _table(raw, "gateway"), _table(raw, "ledger")
    base_dir = path.parent.resolve()
    tls = None
    if "tls" in gw:
        files = _table(raw, "gateway.tls")

        def tls_path(key: str) -> Path:
            given = Path(_get(files, "gateway.tls", key, str, None))
            return given if given.is_absolute() else base_dir / given

        tls = TlsFiles(tls_path("cert"), tls_path("key"), tls_path("client_ca"))
    return BankConfig(
        base_dir=base_dir,
        profile=_get(bank, "bank", "profile", str, "ec"),
        brand_id=_get(bank, "bank", "brand_id", str, "setpay"),
        keys=_get(bank, "bank", "keys", str, "soft:keys"),
        listen=_get(gw, "gateway", "listen", str, "127.0.0.1:7443"),
        ca_listen=_get(gw, "gateway", "ca_listen", str, "127.0.0.1:7444"),
        workers=_get(gw, "gateway", "workers", int, default_workers()),
        threads=_get(gw, "gateway", "threads", int, DEFAULT_THREADS),
        reflection=_get(gw, "gateway", "reflection", bool, True),
        insecure=_get(gw, "gateway", "insecure", bool, False),
        metrics_port=_metrics_port(gw),
        metrics_host=_get(gw, "gateway", "metrics_host", str, DEFAULT_METRICS_HOST),
        max_message_bytes=_get(gw, "gateway", "max_message_bytes", int, DEFAULT_MAX_MESSAGE_BYTES),
        max_concurrent_rpcs=_get(
            gw, "gateway", "max_concurrent_rpcs", int, DEFAULT_MAX_CONCURRENT_RPCS
        ),
        scheduling=_get(gw, "gateway", "scheduling", str, DEFAULT_POLICY),
        grace_seconds=_number(gw, "gateway", "grace_seconds", DEFAULT_GRACE_SECONDS),
        not_serving_seconds=_number(
            gw, "gateway", "not_serving_seconds", DEFAULT_NOT_SERVING_SECONDS
        ),
        hold_expiry_ms=_get(ledger, "ledger", "hold_expiry_ms", int, DEFAULT_HOLD_EXPIRY_MS),
        ledger=_get(ledger, "ledger", "store", str, "sqlite:ledger.db"),
        ledger_service=_get(ledger, "ledger", "service", bool, DEFAULT_LEDGER_SERVICE),
        ledger_prepare_statements=_get(
            ledger, "ledger", "prepare_statements", bool, DEFAULT_PREPARE_STATEMENTS
        ),
        settlement_currency=_get(
            ledger, "ledger", "settlement_currency", int, DEFAULT_SETTLEMENT_CURRENCY
        ),
        retention_days=_get(ledger, "ledger", "retention_days", int, DEFAULT_RETENTION_DAYS),
        tls=tls,
        config_file=base_dir / path.name,  # as named: a link's own directory is base_dir
    )


def load(
    path: Path,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, tuple[str, Any]] | None = None,
) -> BankConfig:
    """Load a configuration file, override it from the environment, then from
    ``overrides`` (``BankConfig`` field -> the flag that gave it and its value), and
    validate it; a refusal names the file, the variable or the flag."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no configuration file at {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except RecursionError:
        # Arrays or inline tables nested past the parser's depth: no setting is, and the
        # parser's own error would end the command in a traceback.
        raise ConfigError(f"{path}: values nested too deeply to be a configuration") from None
    try:
        config = _from_file(path, raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", exc.setting) from None
    flags = dict(overrides or {})
    try:
        changes, sources = environment_overrides(os.environ if env is None else env, flags)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    changes.update({setting: value for setting, (_, value) in flags.items()})
    sources.update({setting: flag for setting, (flag, _) in flags.items()})
    config = replace(config, **changes)
    try:
        # Once, after the overrides: a setting the environment or a flag replaces is judged
        # as replaced, and an error names where its value came from.
        return validate(config)
    except ConfigError as exc:
        where = sources.get(exc.setting or "") or path
        raise ConfigError(f"{where}: {exc}", exc.setting) from None


def config_option(config: BankConfig) -> str:
    """``--config`` naming the file the bank ``config`` was loaded from, quoted for a
    shell: the part every command a bank's refusal advises shares, so that it pastes as
    the operator reads it whatever the file and its directory are called."""
    config_file = config.config_file or config.base_dir / CONFIG_FILE
    return f"--config {shlex.quote(str(config_file))}"
