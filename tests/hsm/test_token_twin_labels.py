"""A key URI whose token= label two tokens have: refused at once, saying serial= chooses.

SoftHSM and ``softhsm2-util --init-token`` let two tokens share a label. Before, a login
met python-pkcs11's MultipleTokensReturned, was retried three times, each retry
restarting the module (which logs every backend of the process out), and ended as
"failed to log in (MultipleTokensReturned)", which says neither what matched twice nor
how to choose.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.cryptoki import Cryptoki, cryptoki
from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_session import ABSENT_RESCAN_SECONDS

from .testbed import DATA, SO_PIN, SOFTHSM_MODULE, SoftHsm, SoftToken, run_tool


def _refusal(token: SoftToken) -> str:
    return (
        f"more than one token in PKCS#11 module {SOFTHSM_MODULE} matches token "
        f"'{token.label}': name the one to use by serial= in the key URI "
        "(pkcs11-tool --list-token-slots shows each token's serial number)"
    )


@contextmanager
def _twin(softhsm: SoftHsm, token: SoftToken) -> Iterator[Path]:
    """Another token with ``token``'s label (and PIN), removed at the block's end: the
    block is given its directory."""
    before = set(os.listdir(softhsm.tokens))
    run_tool("softhsm2-util", "--init-token", "--free", "--label", token.label,
             "--so-pin", SO_PIN, "--pin", token.pin)  # fmt: skip
    (made,) = set(os.listdir(softhsm.tokens)) - before
    try:
        yield softhsm.tokens / made
    finally:
        shutil.rmtree(softhsm.tokens / made, ignore_errors=True)


@pytest.mark.integration
def test_a_first_login_is_refused_at_once_and_serial_chooses(
    softhsm: SoftHsm, token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    restarts: list[str] = []
    reinitialize = Cryptoki.reinitialize

    def counted(module: Cryptoki) -> None:
        restarts.append("restart")
        reinitialize(module)

    with _twin(softhsm, token):
        monkeypatch.setattr(Cryptoki, "reinitialize", counted)
        with pytest.raises(PermanentBackendError) as refused:
            Pkcs11Backend(token.config())
        assert str(refused.value) == _refusal(token)
        assert len(restarts) <= 1  # one look (perhaps after a restart), no retry
        by_serial = replace(token.config(), token_serial=token.serial)
        Pkcs11Backend(by_serial).close()  # the cure the message names


@pytest.mark.integration
def test_a_running_backend_meeting_a_twin_restarts_no_module_on_every_call(
    softhsm: SoftHsm, token: SoftToken
) -> None:
    # The twin made while the bank serves; its sessions lost (a module restart by
    # another backend): each re-login is refused, and looked at again once a second, as
    # an absent token is, not at each call, which would log every other backend out.
    other_token = softhsm.init_token()
    backend = Pkcs11Backend(token.config())
    bystander = Pkcs11Backend(other_token.config())
    module = cryptoki(SOFTHSM_MODULE)
    try:
        key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        other_key = bystander.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        with _twin(softhsm, token):
            module.reinitialize()
            generation, started = module.generation, time.monotonic()
            for _ in range(10):
                with pytest.raises(PermanentBackendError) as refused:
                    backend.sign(key, DATA)
                assert str(refused.value) == _refusal(token)
                with pytest.raises(PermanentBackendError, match="more than one token"):
                    backend.check_health()
                bystander.sign(other_key, DATA)
            looks = 1 + int((time.monotonic() - started) / ABSENT_RESCAN_SECONDS)
            assert module.generation - generation <= looks
        time.sleep(ABSENT_RESCAN_SECONDS)  # the twin gone: seen at the next look
        backend.sign(key, DATA)
        backend.check_health()
    finally:
        backend.close()
        bystander.close()
        shutil.rmtree(other_token.directory, ignore_errors=True)
