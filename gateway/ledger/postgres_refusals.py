"""A connection PostgreSQL refused: what the ledger's error and its log say of it.

- The error names libpq's reason (a password refused, a role or database unknown, no
  server there): "PostgreSQL is unavailable (OperationalError, SQLSTATE none)" told the
  operator nothing, at the bank's start or in a `setpay bank` command.
- Unless that reason holds a password libpq may have had (``connect_secrets``): then the
  error says only that the reason was withheld. Blotting the password out instead gives
  it away: one equal to the role name shows as the role, a short one wherever its
  letters are. libpq's reason quotes a password when the connection string is not what
  its writer meant: a URL whose password holds an unescaped ``@``, ``:`` or ``/`` (libpq
  takes the rest for a host, a port or a database, and names it), a database named like
  the password.
- The passwords known are the connection string's, ``PGPASSWORD``'s, the one libpq took
  for the last host it tried (a service file's or a passfile's included) and, for a URL,
  the pieces above. A passfile's password for another host of a multi-host string is not
  known: its reason is named as libpq gives it.
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

from gateway.ledger.errors import StoreUnavailable

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


def connect_secrets(conninfo: str, exc: psycopg.Error) -> set[str]:
    """Every password libpq may have had for the connection ``exc`` refused (the module
    docstring): a URL's user info after its user name, whole and cut where an unescaped
    ``:``, ``@`` or ``/`` in a password cuts it."""
    found = {os.environ.get("PGPASSWORD", "")}
    with contextlib.suppress(psycopg.Error):
        found.add(str(conninfo_to_dict(conninfo).get("password") or ""))
    with contextlib.suppress(psycopg.Error):  # a connection libpq still holds, or none
        if (pgconn := exc.pgconn) is not None:
            found.add(pgconn.password.decode(errors="replace"))
    scheme, url, rest = conninfo.strip().partition("://")
    if url and scheme in ("postgresql", "postgres"):
        # Its user info ends at the last @ before the query: a password's own @ included.
        query = rest.find("?", rest.find("@") + 1)
        info = (rest if query < 0 else rest[:query]).rpartition("@")[0]
        pieces = re.split("([:@/])", info)[2:]  # the user name, and what ended it, left
        for piece in ["".join(pieces), *pieces[::2]]:
            found.update((piece, unquote(piece)))
    return {secret for secret in found if secret.strip()}


def connect_refused(exc: psycopg.OperationalError, secrets: Iterable[str]) -> StoreUnavailable:
    """The ledger's error for a connection libpq could not open: libpq's reason, or
    ``REASON_WITHHELD`` if the reason holds one of ``secrets`` anywhere."""
    text = str(exc)
    reason = " ".join(text.split())
    if any(s in text or " ".join(s.split()) in reason for s in secrets if s.strip()):
        reason = REASON_WITHHELD
    if len(reason) > CONNECT_REASON_CHARS:
        reason = reason[:CONNECT_REASON_CHARS] + "..."
    error = StoreUnavailable(f"PostgreSQL is unavailable (cannot connect: {reason})")
    error.__cause__ = exc
    return error


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
