"""One ``register`` or ``renew`` at a time in a merchant's or a wallet's directory.

Each makes new key versions and records its request before the request leaves (the
merchant in ``registration.json``, the wallet in its sealed card file), then removes or
reseals that record once the CA's answer is stored or its refusal heard. Two at once (two
terminals, a cron job beside an operator) each find no record, or read the card file
before the other wrote it, and write their own over the other's:

- a merchant: the CA certifies one and refuses the other (REJECTED_BY_AGENT: the ID holds
  live certificates), and the refused one removes the record, whoever wrote it. The
  certified one's answer lost then (a deadline, the process killed) leaves certificates
  the merchant never collects, for keys it holds uncertified, and every later
  ``register`` refused: the stranding ``registration.json`` exists to prevent;
- a wallet: the request whose state is overwritten, its answer lost then, is never
  collected nor asked about again, and its key version, certified by the CA or not, is
  kept uncertified for good (a token's slot each); a refusal heard by one takes back what
  the card file holds, which may be the other's request.

So each holds an exclusive ``flock`` on ``registration.lock`` in the directory from
before it reads its record until it has finished (``hsm.filelock``, with no wait): a
second one is refused at once (``RegistrationError``), nothing made, recorded or sent.
The kernel drops a ``flock`` when its holder ends, killed or not: a lock file left behind
blocks nothing. A wallet's purchases and inquiries only read the card file: they take no
lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from clients.errors import RegistrationError
from hsm.errors import PermanentBackendError, TransientBackendError
from hsm.filelock import exclusive_lock

LOCK_FILE = "registration.lock"


@contextlib.contextmanager
def registering_alone(directory: Path, party: str, command: str) -> Iterator[None]:
    """Hold ``directory``'s registration lock through the block, for ``command``
    (``register``, ``renew``) of ``party`` (``merchant``, ``wallet``); RegistrationError
    at once if another holds it, or if the lock file cannot be made (nothing made,
    recorded or sent)."""
    path = directory / LOCK_FILE
    with contextlib.ExitStack() as held:
        try:
            # No wait: a registration polls a pended request for seconds, and the one
            # given second is refused now rather than run on what the first leaves.
            held.enter_context(exclusive_lock(str(path), 0.0))
        except TransientBackendError:
            raise RegistrationError(
                f"another `setpay {party} register` or `renew` is running on this {party} "
                f"({path.name} is locked): this {command} made, recorded and sent nothing;"
                " run it again once that one has ended"
            ) from None
        except PermanentBackendError as exc:
            raise RegistrationError(f"{command}: {exc}") from None
        yield
