"""``touch``ing a PIN file releases its recorded refusal (docs/OPERATIONS.md, 2.3): when
the token's PIN was reset to match the file, rather than the file fixed, the file's
content is unchanged, and its modification time is what tells setpay to try it again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hsm.cryptoki import cryptoki
from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend

from .pin_file_support import open_elsewhere, refusal_records_naming, write_pin
from .testbed import SOFTHSM_MODULE, CountingPinSource, SoftToken

# The PIN the operator put in the file, which the token is later reset to.
RESET_PIN = "reset-pin-4242"


def _reset_token_pin(token: SoftToken, new_pin: str) -> None:
    """What an HSM administrator does: set the user PIN to ``new_pin``."""
    module = cryptoki(SOFTHSM_MODULE)
    with module.lock:
        found = module.library().get_token(token_label=token.label)
        with found.open(rw=True, user_pin=token.pin) as session:
            session.set_pin(token.pin, new_pin)


@pytest.mark.integration
def test_touching_the_pin_file_releases_its_refusal(token: SoftToken, tmp_path: Path) -> None:
    pin_file = tmp_path / "token.pin"
    write_pin(pin_file, RESET_PIN)
    config = replace(token.config(), pin_source=CountingPinSource("file", str(pin_file)))
    with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
        Pkcs11Backend(config)
    # The token's PIN is reset to what the file holds; the file is left as it was, so
    # its refusal still stands: no process offers the PIN, not even the right one now.
    _reset_token_pin(token, RESET_PIN)
    reads, outcome = open_elsewhere(config)
    assert reads == 0 and "login refused (PinIncorrect)" in outcome, outcome
    # ``touch``: the same content, a new modification time.
    before = pin_file.stat()
    pin_file.touch()
    after = pin_file.stat()
    assert after.st_mtime_ns != before.st_mtime_ns and pin_file.read_text() == RESET_PIN + "\n"
    assert open_elsewhere(config) == (1, "opened")
    # The login that was let through removed the record for every other process.
    assert refusal_records_naming(token, pin_file) == []
