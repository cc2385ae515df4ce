"""What a key creation that fails half-way leaves on the token is said in the error's
message: ``setpay keys generate`` prints only that, and logs show only that."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pkcs11 import exceptions as p11

from hsm import token_creation
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import TransientBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_catalog import KeyId, TokenCatalog
from hsm.token_session import TokenLink, TokenSession


@pytest.fixture
def backend(pkcs11_backend: Pkcs11Backend) -> Pkcs11Backend:
    """The PKCS#11 backend alone (overrides the contract suite's fixture)."""
    return pkcs11_backend


@pytest.mark.integration
def test_a_version_made_before_the_token_stopped_answering_is_named_in_the_message(
    backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reread_fails(catalog: TokenCatalog, key: KeyId) -> object:
        # The key is on the token; reading it back fails, as when the token stops
        # answering right then.
        raise TransientBackendError("token cannot list keys now (CKR_DEVICE_ERROR)")

    monkeypatch.setattr(TokenCatalog, "handle_after_change", reread_fails)
    with pytest.raises(TransientBackendError) as raised:
        backend.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert str(raised.value) == (
        "token cannot list keys now (CKR_DEVICE_ERROR); key 'merchant-sig' v1 was made on "
        f"{backend.token_name} and may be there once it answers: delete it if it is not wanted"
    )
    monkeypatch.undo()
    assert [(key.label, key.version) for key in backend.list_keys()] == [("merchant-sig", 1)]


class _GenerateFails:
    """A real session whose key pair generation is refused (the token runs out of room)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def generate_keypair(self, *args: Any, **kwargs: Any) -> Any:
        raise p11.DeviceMemory()


@pytest.mark.integration
def test_objects_a_failed_creation_could_not_destroy_are_named_in_the_message(
    backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = TokenLink._session_for

    def refusing(link: TokenLink, lease: Any) -> TokenSession:
        item = opened(link, lease)
        return replace(item, session=_GenerateFails(item.session))

    def token_gone(*args: Any) -> list[Any]:
        # The token went away between the refusal and the clean-up.
        raise p11.DeviceRemoved()

    monkeypatch.setattr(TokenLink, "_session_for", refusing)
    monkeypatch.setattr(token_creation, "objects", token_gone)
    with pytest.raises(TransientBackendError) as raised:
        backend.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    message = str(raised.value)
    assert message.startswith(
        f"{backend.token_name} cannot create a ec-p256 key now (DeviceMemory); objects with CKA_ID "
    )
    assert message.endswith(
        f"may be left on {backend.token_name} (pkcs11-tool --list-objects shows them; "
        "the data object has the id in its value)"
    )
