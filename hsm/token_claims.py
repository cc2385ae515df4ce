"""Key versions two setpay keys claim: found, refused by name, said once, read again slowly.

A version claimed by two setpay keys (made by processes that took different key locks,
``hsm.token_login``'s "Lock names") is used by neither once a rebuild of the catalog has
seen both: the token cannot say which one a handle, a certificate or a peer means, and
either (the one listed last, say) may sign or open with a key the caller does not mean.
``get`` of it raises ``PermanentBackendError`` naming both CKA_IDs, and so does ``get`` of
the label's newest when it is the newest: a caller of "the newest" (the token-sealing
key, a CA key) cannot tell whether the version below is the one it means, and given it
would use a key it does not mean, unwarned (a cap token sealed under the newest then
fails as sealed to another). A caller that can tell, by a certificate, looks among the
versions ``list_keys`` gives (``gateway.bank_pki.certified_version``). ``list_keys``
leaves both out; a ``delete`` that includes it destroys nothing
(``hsm.token_catalog.objects_of``, which reads the token itself): "version n" would be two
keys. New versions go above every version setpay's metadata names, used or not
(``hsm.token_creation``). The operator removes the unwanted key by its CKA_ID (its
metadata, left, is ignored), and the other is used again.

Each claim is logged once per catalog (a WARNING when a reading first finds it), not at
every call. A refused version is read again (the whole token, as any miss is) at most
once per ``REREAD_SECONDS``: every call on it would otherwise re-read the token under the
module lock, which every signing thread of the process waits for. An operator's repair
is seen within that time, or at once by ``list_keys`` or any change made through the
backend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from hsm.token_objects import TokenKey

KeyId = tuple[str, int]

#: Shortest time between two readings of the token made because a refused version was
#: asked for: one reading of a token with a few dozen keys takes ~15 ms under the module
#: lock, so a caller retrying a refused key holds the signing path back by under 1%,
#: and an operator who removed one of the two keys waits at most this long.
REREAD_SECONDS = 2.0


class Claims:
    """The versions two keys claim as the catalog last read them, with what was said of
    them and when the token was read; guarded by the catalog's lock."""

    def __init__(self) -> None:
        self.refused: dict[KeyId, str] = {}  # each with the message that refuses it
        self._read_at = -math.inf

    def replace(self, refused: dict[KeyId, str]) -> list[str]:
        """Take a new reading's claims; the messages of those it finds first (to log)."""
        new = [key_id for key_id, message in refused.items() if self.refused.get(key_id) != message]
        self.refused = refused
        self._read_at = time.monotonic()
        return [refused[key_id] for key_id in new]

    def may_read_again(self) -> bool:
        """Whether a refused version may be looked for on the token again (see module)."""
        return time.monotonic() - self._read_at >= REREAD_SECONDS


def claimed_twice(keys: Iterable[TokenKey]) -> dict[KeyId, list[bytes]]:
    """Versions more than one key claims, each with their CKA_IDs (sorted)."""
    ids: dict[KeyId, set[bytes]] = {}
    for key in keys:
        ids.setdefault((key.handle.label, key.handle.version), set()).add(key.ck_id)
    return {key_id: sorted(found) for key_id, found in ids.items() if len(found) > 1}


def claimed_twice_message(key_id: KeyId, ck_ids: Iterable[bytes], token: str) -> str:
    """Why a version two keys claim is not used, naming their CKA_IDs by short hex."""
    label, version = key_id
    shown = [ck_id.hex()[:8] for ck_id in ck_ids]
    return (
        f"key {label!r} v{version} on {token} is claimed by {len(shown)} keys (CKA_IDs "
        f"starting {' and '.join(shown)}): none is used, nor destroyed by a delete; remove "
        "the unwanted ones' objects by CKA_ID (pkcs11-tool --list-objects shows whole ids)"
    )
