"""A renewal whose ``generate`` failed after the token made the key: the version no
handle names is taken back too, or named in a warning when the token cannot be asked.

The failure is injected where the token answers after making the key (reading the
token back); on a real token, pulled at that moment, ``generate`` fails the same way.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import build_parser
from gateway.bank_pki import GATEWAY_KEX_LABEL, GATEWAY_SIG_LABEL
from gateway.gateway_renewal import renew_gateway_keys
from hsm.errors import TransientBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_catalog import KeyId, TokenCatalog
from tests.hsm.testbed import SoftToken

from .advised_commands import spaced_root
from .renewal_support import key_versions
from .test_gateway_renewal import Served


@pytest.fixture
def served(tmp_path: Path, token: SoftToken) -> Iterator[Served]:
    # In a directory a shell would split: the advised `keys delete` must paste whole.
    bank = Served(spaced_root(tmp_path) / "bank", keys=token.uri())
    bank.stop()
    yield bank
    bank.stop()


def test_a_version_a_failed_generate_made_is_taken_back(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = key_versions(served.config())
    reread = TokenCatalog.handle_after_change

    def reread_fails(catalog: TokenCatalog, key: KeyId) -> object:
        # The key-exchange key is on the token; reading the token back after making it
        # fails, as when the token stops answering right then.
        if key[0] == GATEWAY_KEX_LABEL:
            raise TransientBackendError("token cannot list keys now (CKR_DEVICE_ERROR)")
        return reread(catalog, key)

    monkeypatch.setattr(TokenCatalog, "handle_after_change", reread_fails)
    with pytest.raises(TransientBackendError) as raised:
        renew_gateway_keys(served.config())
    monkeypatch.undo()
    # The backend's error names the version it could not take back itself.
    assert f"key {GATEWAY_KEX_LABEL!r} v2 was made on" in str(raised.value)
    # Both new versions are gone, the one ``generate`` never returned a handle for too.
    assert key_versions(served.config()) == before
    renewal = renew_gateway_keys(served.config())
    assert (renewal.signature.version, renewal.key_exchange.version) == (2, 2)


def test_a_version_left_on_a_token_that_stopped_answering_is_named(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    before = key_versions(served.config())
    reread, listing = TokenCatalog.handle_after_change, Pkcs11Backend.list_keys
    answering = [True]

    def reread_fails(catalog: TokenCatalog, key: KeyId) -> object:
        if key[0] == GATEWAY_KEX_LABEL:
            answering[0] = False  # from now on the token does not answer
            raise TransientBackendError("token cannot list keys now (CKR_DEVICE_ERROR)")
        return reread(catalog, key)

    def list_keys(backend: Pkcs11Backend) -> object:
        if not answering[0]:
            raise TransientBackendError("token 'gw' is not present")
        return listing(backend)

    monkeypatch.setattr(TokenCatalog, "handle_after_change", reread_fails)
    monkeypatch.setattr(Pkcs11Backend, "list_keys", list_keys)
    with caplog.at_level(logging.WARNING, logger="setpay"), pytest.raises(TransientBackendError):
        renew_gateway_keys(served.config())
    monkeypatch.undo()
    warnings = [r.getMessage() for r in caplog.records]
    # Nothing could be deleted: each label is named, with what the backend said and the
    # command that deletes it, for this bank's configuration, as the real CLI reads it.
    for label in (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL):
        (named,) = [
            message for message in warnings
            if f"version of {label!r} newer than v1" in message and "is not present" in message
        ]  # fmt: skip
        advised = shlex.split(named.split("`")[1].replace("--version N", "--version 2"))
        args = build_parser().parse_args(advised[1:])
        assert (args.command, args.keys_command, args.label) == ("keys", "delete", label)
        assert args.config == str(served.config().config_file)
    assert key_versions(served.config()) == before | {
        (GATEWAY_SIG_LABEL, 2),
        (GATEWAY_KEX_LABEL, 2),
    }
