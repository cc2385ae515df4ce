"""Processes the bench starts: a bank (``setpay init`` then ``setpay gateway serve``) and
the ceiling and echo services (``setpay bench serve``), each on loopback ports chosen by
the OS, written to a port file once it serves. The bank's metrics port too
(``serve_bank(metrics=True)``): a port picked here and handed over could be taken by
another process before the bank binds it.

They are started as ``python -m cli.main`` with this interpreter, so the bench measures
the installed code whatever ``PATH`` holds; their output goes to a log file beside the
bank, whose last lines are shown when one does not come up.

The servers are started with ``SETPAY_ALLOW_INSPECTION=1`` when no secret of the bank's
keys is in their environment (``inspectable``): no core file, as for any setpay process,
but dumpable, so that the bench may read their ``/proc/PID/fd`` (which worker took each
connection) without ``CAP_SYS_PTRACE``, as any non-root user does. A dumpable process's
``/proc/PID/environ`` is open to every process of the same user too, so a bank whose key
URI reads its PIN or passphrase from the environment (``--keys
pkcs11:...;pin-source=env:NAME``) is served hardened: its ``/proc`` is shut to the bench,
which then cannot see how its connections spread over the workers, nor redial those
piled on one, and reports them unknown (a line in the server's log says why). The bank
the bench makes without ``--keys`` always reads a passphrase file of its own, whatever
the bench's environment holds, so it stays inspectable; the warning the variable brings
is in the server's log.

Each is started in a session (and process group) of its own, so that SIGKILL, when a
server does not stop or does not come up, reaches its workers too: killed alone, a
parent leaves them serving on its port. That also keeps the terminal's Ctrl-C from
reaching them behind the bench's back: the bench stops them itself on its way out, and
stops a server it was still starting when it is interrupted (Ctrl-C, SIGTERM, any error).

A bench that cannot stop them (killed with SIGKILL, by the OOM killer) leaves each its
lifeline (``--lifeline-fd``): the read end of a pipe whose write end only the bench holds
(the descriptor is not inherited by any other process it runs), so that its death, which
closes that end, reads as the pipe's end in the server: a stop, as SIGTERM's (drain, close,
exit 0). Not a signal asked for at fork: ``preexec_fn`` is unsafe in a process that has
used gRPC; not the parent's pid either, which names a subreaper once the bench is gone.

``holds``: a descriptor ``setpay init`` and each server inherit and keep, unknowing, for as
long as they (and whatever they fork) live: the write end of the pipe whose end tells the
bench's reaper that nothing writes in its temporary directory any more
(``cli.bench_workdir``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clients.loadtest.cpu import descendants
from clients.loadtest.errors import SpawnError
from hsm.errors import InvalidKeyURI
from hsm.uri import PASSPHRASE_ENV, Pkcs11KeyURI, parse_key_uri

# Creating a bank makes a brand PKI (RSA-2048 keys take a while, a token longer still).
INIT_SECONDS = 300.0
# A server loads its keys and certificates, opens its stores and binds; a PKCS#11 login
# of several workers is serialized, so this leaves room for a slow token.
STARTUP_SECONDS = 120.0
# SIGTERM lets a server drain (the grace period of a bank made by ``init_bank``: 5 s) before
# SIGKILL.
STOP_SECONDS = 15.0
# Lines of a failed process's log shown in the error.
LOG_TAIL_LINES = 20
# How often to look for the port file while a server starts.
POLL_SECONDS = 0.05
LOOPBACK_ANY_PORT = "127.0.0.1:0"
# What leaves a setpay process dumpable (``cli.hardening.ALLOW_INSPECTION``, which clients
# may not import; a test holds the two equal).
ALLOW_INSPECTION = "SETPAY_ALLOW_INSPECTION"
# The variable that overrides a bank's configured key URI, and the URI when neither gives
# one (``gateway.config``, which clients may not import either).
KEYS_ENV = "SETPAY_KEYS"
DEFAULT_KEYS = "soft:keys"
# ``setpay gateway serve --metrics-port`` for a port the OS picks (then the third number
# of the port file).
ANY_METRICS_PORT = "any"
# The servers' option naming their lifeline's descriptor (``setpay gateway serve`` and
# ``setpay bench serve`` both take it).
LIFELINE_OPTION = "--lifeline-fd"


def _setpay(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def init_bank(directory: Path, profile: str, keys: str | None, *, holds: int | None = None) -> Path:
    """``setpay init DIRECTORY``, with the merchant TLS credentials the bench's channels
    present; returns its ``setpay.toml``. ``holds``: the module docstring."""
    argv = _setpay("init", str(directory), "--profile", profile, "--merchant-tls")
    env = dict(os.environ)
    if keys:
        argv += ["--keys", keys]
    else:
        # Without it, init would key the throwaway keystore to the passphrase the user's
        # environment holds, which a dumpable server would then show (``inspectable``).
        env.pop(PASSPHRASE_ENV, None)
    log = directory.parent / f"{directory.name}-init.log"
    with log.open("wb") as out:
        done = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=INIT_SECONDS,
            check=False, pass_fds=_held(holds),
        )  # fmt: skip
    if done.returncode != 0:
        raise SpawnError(f"setpay init failed ({done.returncode}):\n{_tail(log)}")
    return directory / "setpay.toml"


@dataclass
class Server:
    """A server process the bench started, and the ports it bound."""

    name: str
    process: subprocess.Popen[bytes]
    ports: tuple[int, ...]
    log: Path
    metrics_port: int | None = None
    """The bank's Prometheus page, on loopback, when it serves one."""
    lifeline: int | None = None
    """The write end of the server's lifeline, when it has one: closed once it stopped."""

    @property
    def port(self) -> int:
        """The first port (the PaymentGateway, or the ceiling/echo service)."""
        return self.ports[0]

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT`` of the first port."""
        return f"127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The process and its live descendants (its workers)."""
        return descendants([self.process.pid])

    def stop(self) -> None:
        """SIGTERM, wait for the drain, SIGKILL to its whole group if it does not end."""
        try:
            if self.process.poll() is not None:
                _kill_group(self.process)  # its workers, if it died without stopping them
                return
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_SECONDS)
            _kill_group(self.process)
        finally:
            # Last: its end is a second request to stop, which a draining server would
            # only answer in its log.
            _close(self.lifeline)
            self.lifeline = None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``process`` leads (nothing when none of it is left)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(STOP_SECONDS)


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _held(*fds: int | None) -> tuple[int, ...]:
    return tuple(fd for fd in fds if fd is not None)


def inspectable(config: Path) -> bool:
    """Whether servers of the bank ``config`` describes may be left dumpable: only when
    the key URI they will use (``SETPAY_KEYS``, else the file's) reads its secret from a
    file, so that none sits in their environment. Anything unreadable: no."""
    try:
        with config.open("rb") as file:
            configured = tomllib.load(file).get("bank", {}).get("keys", DEFAULT_KEYS)
        parsed = parse_key_uri(os.environ.get(KEYS_ENV) or str(configured))
    except (OSError, tomllib.TOMLDecodeError, AttributeError, InvalidKeyURI):
        return False
    return parsed.pin_source.kind == "file"


def keys_kind(uri: str) -> str:
    """The key backend a URI names, for the report: never a PIN, a path or a label."""
    try:
        parsed = parse_key_uri(uri)
    except InvalidKeyURI:
        return "unrecognized key URI"
    if isinstance(parsed, Pkcs11KeyURI):
        return f"pkcs11 ({Path(parsed.module).name})"
    return "software keystore"


def start(
    name: str,
    argv: Sequence[str],
    port_file: Path,
    log: Path,
    *,
    inspect: bool = False,
    lifeline: bool = False,
    holds: int | None = None,
) -> Server:
    """Start ``argv`` (which writes ``port_file`` once serving) and wait for its ports;
    stopped (its whole group) if anything ends the wait, an interruption included.
    ``inspect``: left dumpable (``inspectable``), without a keystore passphrase variable,
    which such a server does not read. ``lifeline``: given one (LIFELINE_OPTION), so that
    it stops when this process dies, however it dies (the module docstring). ``holds``:
    passed on to it (the module docstring)."""
    port_file.unlink(missing_ok=True)
    env = dict(os.environ)
    if inspect:
        env[ALLOW_INSPECTION] = "1"
        env.pop(PASSPHRASE_ENV, None)
    argv = list(argv)
    # Both ends are non-inheritable (``os.pipe``): only the server gets the read end
    # (``pass_fds``), and no other process this one starts gets the write end, which would
    # keep the pipe from reaching its end while that process lives.
    read, write = os.pipe() if lifeline else (None, None)
    try:
        if read is not None:
            argv += [LIFELINE_OPTION, str(read)]
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                pass_fds=_held(read, holds),
            )  # fmt: skip
    except BaseException:
        _close(write)
        raise
    finally:
        _close(read)
    try:
        ports = _wait_for_ports(name, process, port_file, log)
    except BaseException:
        try:
            _kill_group(process)
        finally:
            _close(write)
        raise
    return Server(name, process, ports, log, lifeline=write)


def _serve(
    name: str, argv: Sequence[str], port_file: Path, log: Path, config: Path, holds: int | None
) -> Server:
    """``start`` a server of the bank ``config``, inspectable if it may be."""
    inspect = inspectable(config)
    if not inspect:
        with log.open("a") as out:
            out.write(
                f"setpay bench: {name} left hardened, the bank's key URI reading its secret "
                "from the environment: the bench cannot see its connections per worker\n"
            )
    return start(name, argv, port_file, log, inspect=inspect, lifeline=True, holds=holds)


def _wait_for_ports(
    name: str, process: subprocess.Popen[bytes], port_file: Path, log: Path
) -> tuple[int, ...]:
    give_up = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise SpawnError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        text = port_file.read_text() if port_file.exists() else ""
        if text.endswith("\n"):
            return tuple(int(p) for p in text.split())
        time.sleep(POLL_SECONDS)
    raise SpawnError(f"{name} did not serve within {STARTUP_SECONDS:.0f} s:\n{_tail(log)}")


def serve_bank(
    config: Path, workdir: Path, workers: int, *, metrics: bool = False, holds: int | None = None
) -> Server:
    """``setpay gateway serve`` with ``workers`` workers on loopback ports chosen by the OS;
    with ``metrics``, its Prometheus page on a loopback port the OS chooses too, in
    ``Server.metrics_port``."""
    port_file = workdir / "bank.ports"
    # Always passed: without it the bank runs its configured count (the cores here).
    argv = _setpay(
        "gateway", "serve", "--config", str(config), "--listen", LOOPBACK_ANY_PORT,
        "--ca-listen", LOOPBACK_ANY_PORT, "--port-file", str(port_file),
        "--workers", str(workers),
    )  # fmt: skip
    if metrics:
        argv += ["--metrics-port", ANY_METRICS_PORT]
    server = _serve("bank", argv, port_file, workdir / "bank.log", config, holds)
    if metrics:
        # "GATEWAY_PORT CA_PORT METRICS_PORT": the bank adds the port the OS picked.
        if len(server.ports) != 3:
            server.stop()
            raise SpawnError(f"the bank's port file has no metrics port: {server.ports}")
        server.metrics_port = server.ports[2]
    return server


def serve_reference(
    mode: str,
    config: Path,
    workdir: Path,
    workers: int,
    *,
    delay_ms: float = 0.0,
    threads: int | None = None,
    holds: int | None = None,
) -> Server:
    """``setpay bench serve --mode ceiling|echo`` with the bank's configuration."""
    port_file = workdir / f"{mode}.ports"
    argv = _setpay(
        "bench", "serve", "--mode", mode, "--config", str(config),
        "--listen", LOOPBACK_ANY_PORT, "--port-file", str(port_file),
        "--workers", str(workers),
    )  # fmt: skip
    if delay_ms:
        argv += ["--delay-ms", f"{delay_ms:g}"]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return _serve(mode, argv, port_file, workdir / f"{mode}.log", config, holds)
