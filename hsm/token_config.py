"""Where a PKCS#11 token is and how to reach it: ``Pkcs11Config``, validated when made.

Kept apart from ``hsm.token_session`` (which re-exports it), whose ``TokenLink`` uses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hsm.errors import PermanentBackendError
from hsm.pinsource import PinSource

#: Working sessions per process. Token calls are serialized per process anyway (see
#: hsm.cryptoki), so more sessions add no throughput; 4 lets a few threads queue on the
#: module lock instead of on the pool, and keeps well under any token's session limit.
DEFAULT_POOL_SIZE = 4

#: How long a thread waits for a pool session, and then for the module lock, before
#: TransientBackendError. One signature takes ~0.1 ms on SoftHSM and an RSA-3072 key
#: generation ~1 s; 5 s means the token is stuck or the process is overloaded, and the
#: caller should shed load.
DEFAULT_POOL_WAIT_SECONDS = 5.0

#: Login attempts (each after a re-initialization) before giving up. Concurrent logins
#: are serialized by a file lock, so a second attempt covers a token file caught mid-
#: rewrite by a process that does not use the lock; three is plenty for that.
DEFAULT_LOGIN_ATTEMPTS = 3


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the token is and how to reach it; validated at construction."""

    module: str
    pin_source: PinSource
    token_label: str | None = None
    token_serial: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    pool_wait_seconds: float = DEFAULT_POOL_WAIT_SECONDS
    login_attempts: int = DEFAULT_LOGIN_ATTEMPTS
    #: Directory of the inter-process lock files, only this user's (default: a per-user
    #: directory in the system temp directory; see ``hsm.filelock.lock_directory``).
    lock_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.token_label and not self.token_serial:
            raise PermanentBackendError("pkcs11 backend needs a token label or serial")
        if self.pool_size < 1 or self.pool_wait_seconds <= 0 or self.login_attempts < 1:
            raise PermanentBackendError("pkcs11 pool size, wait and login attempts must be > 0")

    def with_pool(self, size: int | None = None, wait_seconds: float | None = None) -> Pkcs11Config:
        """A copy with other pool settings."""
        return dataclasses.replace(
            self,
            pool_size=self.pool_size if size is None else size,
            pool_wait_seconds=self.pool_wait_seconds if wait_seconds is None else wait_seconds,
        )

    def token_name(self) -> str:
        """The token as named in messages: by label, else by serial."""
        if self.token_label:
            return f"token {self.token_label!r}"
        return f"token with serial {self.token_serial!r}"
