"""Faults a real token reports under the backend: each must surface as the right error.

Tokens change under a running backend: another tool narrows a key's attributes, another
process deletes a key. Each case here makes the change for real on SoftHSM and checks
the error the next operation raises, and what the backend did (or did not) reset.
"""

from __future__ import annotations

import multiprocessing
import shutil
from collections.abc import Callable
from typing import Any

import pytest
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import (
    DecapsulationError,
    KeyNotFound,
    KeyUsageError,
    TransientBackendError,
    UnsupportedAlgorithm,
)
from hsm.pkcs11 import Pkcs11Backend, Pkcs11Config
from hsm.policy import public_key_der
from hsm.token_session import TokenSession

from .keycheck import encapsulate, verify
from .testbed import DATA, SOFTHSM_MODULE, SoftHsm, SoftToken, pkcs11_tool


@pytest.fixture
def backend(pkcs11_backend: Pkcs11Backend) -> Pkcs11Backend:
    """The PKCS#11 backend alone (overrides the contract suite's fixture)."""
    return pkcs11_backend


def _set_private_attribute(
    backend: Pkcs11Backend, label: str, attribute: Attribute, value: bool
) -> None:
    """Change a private key's attribute on the token, as another tool would."""
    ck_id = backend.object_id(backend.get(label, 1))

    def change(session: TokenSession) -> None:
        session.find(ObjectClass.PRIVATE_KEY, ck_id)[attribute] = value

    backend._link.run(change, "change a key attribute", retry=False)


@pytest.mark.integration
def test_token_refusing_to_derive_is_a_usage_error_not_a_bad_ciphertext(
    backend: Pkcs11Backend,
) -> None:
    key = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    _set_private_attribute(backend, "kex", Attribute.DERIVE, False)
    point, _ = encapsulate(key)
    with pytest.raises(KeyUsageError, match="refused to decapsulate") as caught:
        backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, point)
    # The operator needs the CKR code to fix the key; it says nothing about the input.
    assert caught.value.__cause__ is not None


@pytest.mark.integration
def test_key_deleted_elsewhere_is_not_found_without_restarting_the_module(
    token: SoftToken, softhsm: SoftHsm
) -> None:
    events: list[tuple[str, str, str | None]] = []

    def observer(name: str) -> Callable[[str, str, float, str | None], None]:
        return lambda op, _algorithm, _seconds, error: events.append((name, op, error))

    other_token = softhsm.init_token()
    backend = Pkcs11Backend(token.config(), observer("this"))
    bystander = Pkcs11Backend(other_token.config(), observer("bystander"))
    try:
        key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        other_key = bystander.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        backend.sign(key, DATA)  # the private key's handle is now cached
        bystander.sign(other_key, DATA)
        generation = cryptoki(SOFTHSM_MODULE).generation
        # Another process (here pkcs11-tool) destroys the key: the cached handle is stale.
        ck_id = backend.object_id(key).hex()
        pkcs11_tool(token, "--delete-object", "--type", "privkey", "--id", ck_id)
        events.clear()
        with pytest.raises(KeyNotFound, match=f"key 'k' v1 is not on token {token.label!r}"):
            backend.sign(key, DATA)
        bystander.sign(other_key, DATA)
        # A stale handle is one object gone, not a lost token: no module restart, which
        # would have logged every backend of the process out.
        assert cryptoki(SOFTHSM_MODULE).generation == generation
        assert [e for e in events if e[1] in ("login", "relogin")] == []
        assert events == [("this", "sign", "KeyNotFound"), ("bystander", "sign", None)]
    finally:
        backend.close()
        bystander.close()
        shutil.rmtree(other_token.directory, ignore_errors=True)


def _make_again_in_child(config: Pkcs11Config, label: str, results: Any) -> None:
    """Another process: delete every version of ``label`` and generate it again."""
    try:
        other = Pkcs11Backend(config)
        other.delete(label)
        made = other.generate(label, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        other.close()
        results.put(public_key_der(made.public_key))
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.integration
def test_key_made_again_by_another_process_is_not_used_for_the_old_handle(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    old = backend.generate("reborn", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(old, DATA)  # the catalog and the private key's handle are cached
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_make_again_in_child, args=(token.config(), "reborn", results))
    child.start()
    made = results.get(timeout=60)
    child.join(timeout=60)
    assert isinstance(made, bytes), made
    # This backend's catalog still lists the old key as 'reborn' v1, and v1 on the token
    # is now another key: the old handle gets "not found", never the new key's signature.
    with pytest.raises(KeyNotFound, match=f"key 'reborn' v1 is not on token {token.label!r}"):
        backend.sign(old, DATA)
    new = backend.get("reborn")
    assert public_key_der(new.public_key) == made
    verify(new.public_key, backend.sign(new, DATA), DATA)
    with pytest.raises(KeyNotFound, match="'reborn' v1 was deleted and made again"):
        backend.sign(old, DATA)


def _failing_once(calls: list[str]) -> Callable[[TokenSession], str]:
    """An operation whose first run meets SoftHSM's general error, as under a crowd."""

    def operation(session: TokenSession) -> str:
        calls.append("run")
        if len(calls) == 1:
            raise p11.GeneralError()
        return "done"

    return operation


@pytest.mark.integration
def test_a_passing_general_error_on_the_banks_own_data_is_run_again(
    backend: Pkcs11Backend,
) -> None:
    # Four processes opening one token together met this in one run of about a hundred:
    # the key search failed with CKR_GENERAL_ERROR, token present and logged in.
    calls: list[str] = []
    assert backend._link.run(_failing_once(calls), "list keys") == "done"
    assert calls == ["run", "run"]


@pytest.mark.integration
def test_a_general_error_twice_is_the_operations_own(backend: Pkcs11Backend) -> None:
    calls: list[str] = []

    def always(session: TokenSession) -> str:
        calls.append("run")
        raise p11.GeneralError()

    with pytest.raises(UnsupportedAlgorithm, match="cannot list keys as asked"):
        backend._link.run(always, "list keys")
    assert calls == ["run", "run"]  # bounded: once more, not until it works


@pytest.mark.integration
def test_a_general_error_on_a_peers_ciphertext_is_bad_input_at_once(
    backend: Pkcs11Backend,
) -> None:
    # What a sender controls is not run twice: bad input costs the token one operation.
    calls: list[str] = []
    with pytest.raises(DecapsulationError):
        backend._link.run(_failing_once(calls), "decapsulate", peer_input=True)
    assert calls == ["run"]


@pytest.mark.integration
def test_a_session_the_token_will_not_open_is_a_backend_error(
    backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Opening a session is a token call like any other: out of sessions is "not now",
    # never a raw PKCS#11 exception in the caller's lap.
    key = backend.generate("busy", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)

    def no_session(lease: object) -> TokenSession:
        raise p11.SessionCount()

    monkeypatch.setattr(backend._link, "_session_for", no_session)
    with pytest.raises(TransientBackendError, match="cannot sign now"):
        backend.sign(key, DATA)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("usage", "algorithm", "attribute"),
    [
        (KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256, Attribute.SIGN),
        (KeyUsage.SIGNATURE, KeyAlgorithm.RSA_2048, Attribute.SIGN),
        (KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256, Attribute.DERIVE),
    ],
)
def test_key_narrowed_on_the_token_before_it_is_looked_up_is_a_usage_error(
    backend: Pkcs11Backend,
    token: SoftToken,
    usage: KeyUsage,
    algorithm: KeyAlgorithm,
    attribute: Attribute,
) -> None:
    key = backend.generate("narrowed", usage, algorithm)
    _set_private_attribute(backend, "narrowed", attribute, False)
    # A backend opened afterwards (a restarted process) looks the key up already narrowed.
    fresh = Pkcs11Backend(token.config())
    try:
        with pytest.raises(KeyUsageError, match=r"refused to .*the key's attributes forbid it"):
            if usage.can_sign:
                fresh.sign(key, DATA)
            else:
                point, _ = encapsulate(key)
                fresh.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, point)
    finally:
        fresh.close()


@pytest.mark.integration
def test_rsa_key_narrowed_on_the_token_does_not_stop_a_backend_opening(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    # The OAEP trial runs on the first RSA key-exchange key: here one the token forbids.
    narrowed = backend.generate("a-narrowed", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    usable = backend.generate("b-usable", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    _set_private_attribute(backend, "a-narrowed", Attribute.DECRYPT, False)
    fresh = Pkcs11Backend(token.config())
    try:
        assert fresh.rsa_kem is KemAlgorithm.RSA_OAEP_SHA1
        kem = KemAlgorithm.RSA_OAEP_SHA1
        ciphertext, secret = encapsulate(usable, kem)
        assert fresh.decapsulate(fresh.get("b-usable"), kem, ciphertext) == secret
        ciphertext, _ = encapsulate(narrowed, kem)
        with pytest.raises(KeyUsageError, match="refused to decapsulate"):
            fresh.decapsulate(fresh.get("a-narrowed"), kem, ciphertext)
    finally:
        fresh.close()
