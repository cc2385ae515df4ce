"""A connection PostgreSQL refused: what the ledger's error and its log say of it.

- The error names libpq's reason (a password refused, a role or database unknown, no
  server there): "PostgreSQL is unavailable (OperationalError, SQLSTATE none)" told the
  operator nothing, at the bank's start or in a `setpay bank` command.
- Unless that reason holds a password libpq may have had (``connect_secrets``): then the
  error says only that the reason was withheld. Blotting the password out instead gives
  it away: one equal to the role name shows as the role, a short one wherever its
  letters are. libpq's reason quotes a password when the connection string is not what
  its writer meant: a URL whose password holds an unescaped ``@``, ``/`` or, after an
  ``@``, ``:``, ``?``, ``,``, ``[`` (libpq takes the rest for a host, a port, a database
  or a query, and names them), a query's ``password=`` value holding an unescaped ``&``
  (libpq takes the rest for other parameters), a database named like the password.
- The passwords known are the connection string's, ``PGPASSWORD``'s, the one libpq took
  for the last host it tried (a service file's or a passfile's included) and, for a URL,
  every reading of its password (``_url_secrets``). A passfile's password for another
  host of a multi-host string is not known: its reason is named as libpq gives it.
- Whether the refusal passes by itself: ``StoreAway`` when libpq says the server is away
  (the connection refused or timed out, no socket, no route, the server shutting down or
  starting, the name service failing for now, a host not the primary that
  ``target_session_attrs`` asks for: a failover under way), for every host it tried
  (psycopg gives a failure of several hosts the last one's type: its timeout says
  nothing of the others, each judged by its line); ``StoreBusy`` when, the others away,
  one or more said every connection slot is taken (53300: too many clients, for the
  server, a role or a database; the slots left reserved): a ledger shared by several
  hosts meets such peaks, and a connection closing ends them. StoreUnavailable, lasting,
  when the server refused the connection (a password, a role, a database, pg_hba.conf),
  when no password was given, for a host name unknown, and for any reason this module
  does not know (a server whose messages are in another language among them): a worker's
  replacement meeting a lasting refusal stops the bank, one meeting the server away or
  busy is started again (``gateway.child``).
- The log says it at WARNING (the requests it fails are answered UNAVAILABLE and logged
  without a reason): at once when its reason is new (the first, another than the last
  said, the first after a connection opened), then once a minute while it lasts. A
  serving bank whose password was changed under it says so, and says so again when the
  reason changes, without a line per request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from gateway.ledger.errors import StoreAway, StoreBusy, StoreUnavailable

log = logging.getLogger("setpay.ledger")

# The same reason of a refused connection is logged at most this often (the module
# docstring): often enough that an operator reading the log sees it still lasts.
CONNECT_FAILURE_LOG_SECONDS = 60.0
# libpq's reason for a refused connection, as the error and the log line give it, is cut
# to this many characters: it names the server, the role and the database, no more.
CONNECT_REASON_CHARS = 300
# What a refused connection's error says instead of a reason quoting a secret.
REASON_WITHHELD = "libpq's reason withheld: it would quote a secret"
# psycopg's line between its own summary and each host's failure when it tried several.
_SEVERAL_HOSTS = "\nMultiple connection attempts failed"
# The connection parameters whose value is a secret: a key file's passphrase too.
_SECRET_PARAMETERS = ("password", "sslpassword")
# What ends a URL's user name as its writer meant it, and as libpq reads its user info.
_USER_NAME_END = re.compile("[:@/]")
_USER_INFO_END = re.compile("[@/]")
# What ends a host, a port and the database as libpq reads a URL.
_HOST_END = re.compile("[:/?,]")
_PORT_END = re.compile("[/?,]")
_QUERY_START = re.compile("[?]")
# libpq's and psycopg's words for a server that is away (``StoreAway``), in one failure
# line: the OS's for a connection refused, timed out or cut, or a Unix socket not there
# (the server stopped); libpq's own; the server's while it stops or starts (57P03); the
# name service failing for now (EAI_AGAIN); libpq's for a host that is not the primary
# ``target_session_attrs`` asks for (read-write: its session read-only; primary: a hot
# standby), which a multi-host string meets while a failover is under way, the old
# primary gone and the new one not yet promoted: taken for lasting, a replacement
# starting then stopped the bank, its other worker serving, though the failover ends by
# itself within seconds. So for one host too (a name or address moved to the new
# primary); a string naming standbys alone fails the bank's first start, which stops it.
# A server's refusal (FATAL: password authentication failed, role or database does not
# exist, no pg_hba.conf entry) matches none of them.
_AWAY_REASON = re.compile(
    "|".join(
        (
            r"failed: No such file or directory$",
            r": (?:Connection refused|Connection timed out|Connection reset by peer)$",
            r": (?:No route to host|Network is unreachable|Host is unreachable)$",
            r"\btimeout expired$",
            r": server closed the connection unexpectedly$",
            r"FATAL:  the database system is (?:starting up|shutting down|in recovery mode)$",
            r"FATAL:  the database system is not yet accepting connections$",
            r"\[Errno -3\] Temporary failure in name resolution$",
            r": (?:session is read-only|server is in hot standby mode)$",
        )
    )
)
# The server's words for every connection slot taken (53300, ``StoreBusy``): for the
# server, a role or a database (PostgreSQL 15's and 16's words for the reserved ones).
_BUSY_REASON = re.compile(
    r"FATAL:  (?:sorry, too many clients already"
    r"|too many connections for (?:role|database) .*"
    r"|remaining connection slots are reserved for .*)$"
)
# What starts a failure line: the others (a tab: libpq's hint; DETAIL or HINT: the
# server's) say more of the one before, and psycopg's header of several hosts' failures.
_NOT_A_FAILURE = ("\t", "DETAIL:  ", "HINT:  ", _SEVERAL_HOSTS.strip())
# Every character that ends a part of a URL as libpq reads it (the user info, a host, a
# port, the database, a query parameter's name or value) or brackets an IPv6 host.
_URL_BREAKS = re.compile(r"[:@/?,&=\[\]]")


def connect_secrets(conninfo: str, exc: psycopg.Error) -> set[str]:
    """Every password libpq may have had for the connection ``exc`` refused (the module
    docstring); for a URL, every piece libpq may have read of what its writer meant for
    one (``_url_secrets``)."""
    found = {os.environ.get("PGPASSWORD", "")}
    with contextlib.suppress(psycopg.Error):
        given = conninfo_to_dict(conninfo)
        found.update(str(given.get(key) or "") for key in _SECRET_PARAMETERS)
    with contextlib.suppress(psycopg.Error):  # a connection libpq still holds, or none
        if (pgconn := exc.pgconn) is not None:
            found.add(pgconn.password.decode(errors="replace"))
    scheme, url, rest = conninfo.strip().partition("://")
    if url and scheme in ("postgresql", "postgres"):
        found.update(_url_secrets(rest))
    return {secret for secret in found if secret.strip()}


def _url_secrets(rest: str) -> set[str]:
    """What a URL (``rest``: its text after ``://``) may hold of a password, whole and in
    the pieces libpq may have read apart and quoted one by one.

    Its writer's password may run from the end of the user name (its first ``:``, ``@``
    or ``/``) up to any ``@`` after it: up to the last one anywhere, a query's included.
    A query's ``password=`` (or ``sslpassword=``) value may run to the URL's end. Of each,
    the text libpq read as something other than that password (past its first ``@``, past
    the value's ``&``) is cut at every character that ends a part for libpq, each piece a
    secret. The query's parameter names are none: libpq names no unknown one, it refuses
    the URL, and a refused URL quotes nothing. A URL whose query holds an ``@``, or whose
    query's password is not its last parameter, may so withhold more than its password:
    a host's name withheld costs a reason, a password's piece shown costs the password."""
    hosts, query = _libpq_url_layout(rest)
    names: set[tuple[int, int]] = set()  # where the query's parameter names are
    spans: list[tuple[int, int, int]] = []  # a password's start, what libpq read apart, end
    at = query + 1
    for param in rest[at:].split("&") if query < len(rest) else []:
        name, is_value, _ = param.partition("=")
        names.add((at, at + len(name)))
        if is_value and unquote(name) in _SECRET_PARAMETERS:
            spans.append((at + len(name) + 1, at + len(param), len(rest)))
        at += len(param) + 1
    user, last_at = _USER_NAME_END.search(rest), rest.rfind("@")
    if user is not None and user.end() <= last_at:
        spans.append((user.end(), max(user.end(), hosts), last_at))
    found: set[str] = set()
    for start, apart, end in spans:
        pieces, at = [rest[start:end]], apart
        for piece in _URL_BREAKS.split(rest[apart:end]) if apart < end else []:
            if (at, at + len(piece)) not in names:
                pieces.append(piece)
            at += len(piece) + 1
        found.update(text for piece in pieces for text in (piece, unquote(piece)))
    return found


def _libpq_url_layout(rest: str) -> tuple[int, int]:
    """Where libpq, reading a URL whose text after ``://`` is ``rest``, starts its hosts
    and its query's ``?`` (``len(rest)``: none). Its user info ends at the first ``@``,
    unless a ``/`` comes first (then it has none); a host ends at ``:``, ``/``, ``?`` or
    ``,`` (a bracketed IPv6 one at its ``]``), a port at ``/``, ``?`` or ``,``, the
    database at ``?`` (libpq's ``conninfo_uri_parse_options``)."""
    info = _USER_INFO_END.search(rest)
    hosts = info.end() if info is not None and info.group() == "@" else 0
    at, end = hosts, len(rest)
    while True:
        if rest.startswith("[", at) and (at := rest.find("]", at)) < 0:
            return hosts, end  # libpq refuses the URL: nothing of it is read
        at = _first(_HOST_END, rest, at)
        if rest.startswith(":", at):
            at = _first(_PORT_END, rest, at)
        if not rest.startswith(",", at):
            break
        at += 1
    if rest.startswith("/", at):
        at = _first(_QUERY_START, rest, at)
    return hosts, at


def _first(pattern: re.Pattern[str], text: str, start: int) -> int:
    """Where ``pattern`` is first found in ``text`` from ``start`` on; else its length."""
    found = pattern.search(text, start)
    return len(text) if found is None else found.start()


def connect_refused(exc: psycopg.OperationalError, secrets: Iterable[str]) -> StoreUnavailable:
    """The ledger's error for a connection libpq could not open: libpq's reason, or
    ``REASON_WITHHELD`` if the reason holds one of ``secrets`` anywhere."""
    text = str(exc)
    reason = " ".join(text.split())
    if any(s in text or " ".join(s.split()) in reason for s in secrets if s.strip()):
        reason = REASON_WITHHELD
    if len(reason) > CONNECT_REASON_CHARS:
        reason = reason[:CONNECT_REASON_CHARS] + "..."
    kind = StoreAway if server_away(exc) else StoreBusy if server_busy(exc) else None
    error = (kind or StoreUnavailable)(f"PostgreSQL is unavailable (cannot connect: {reason})")
    error.__cause__ = exc
    return error


def server_away(exc: psycopg.OperationalError) -> bool:
    """Whether a connection libpq could not open failed only because the server is away
    (the module docstring): psycopg's timeout of its one host, or each failure line
    ``exc`` says, one per host and address tried, one of ``_AWAY_REASON``'s. Of several
    hosts, psycopg gives the error the last one's type: a timeout there says nothing of
    a role or password an earlier host refused."""
    several = _SEVERAL_HOSTS in str(exc)
    if isinstance(exc, psycopg.errors.ConnectionTimeout) and not several:
        return True
    failures = _failures(exc)
    return bool(failures) and all(_AWAY_REASON.search(line) for line in failures)


def server_busy(exc: psycopg.OperationalError) -> bool:
    """Whether a connection libpq could not open failed only because the server is away
    or has every connection slot taken, one of them at least (``_BUSY_REASON``)."""
    failures = _failures(exc)
    return any(_BUSY_REASON.search(line) for line in failures) and all(
        _AWAY_REASON.search(line) or _BUSY_REASON.search(line) for line in failures
    )


def _failures(exc: psycopg.OperationalError) -> list[str]:
    """The failure lines ``exc`` says, one per host and address tried."""
    lines = [line.rstrip() for line in str(exc).splitlines()]
    return [line for line in lines if line.strip() and not line.startswith(_NOT_A_FAILURE)]


class RefusalLog:
    """Logs a store's refused connections, each reason at once and then once a minute
    while it lasts (the module docstring); safe to call from any thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Measure the minute on ``clock`` (seconds)."""
        self._clock = clock
        self._lock = threading.Lock()
        # When the last refusal was logged, and its reason.
        self._said: tuple[float, frozenset[str]] | None = None

    def refused(self, refused: StoreUnavailable, exc: psycopg.Error) -> None:
        """Log ``refused`` (``exc``'s error) unless its reason was logged less than
        CONNECT_FAILURE_LOG_SECONDS ago. A reason is its hosts' failures in any order: a
        string with ``load_balance_hosts=random`` tries them in another at every turn."""
        now, text = self._clock(), str(exc)
        _, several, failures = text.partition(_SEVERAL_HOSTS)
        reason = frozenset(failures.splitlines() if several else [text])
        with self._lock:
            said = self._said
            if said and said[1] == reason and now - said[0] < CONNECT_FAILURE_LOG_SECONDS:
                return
            self._said = (now, reason)
        log.warning("ledger: %s; said again at most once a minute while it lasts", refused)

    def connected(self) -> None:
        """A connection opened: the next refusal is news, logged at once."""
        with self._lock:
            self._said = None
