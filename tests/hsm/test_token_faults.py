"""Faults a real token reports under the backend: each must surface as the right error.

Tokens change under a running backend: another tool narrows a key's attributes, another
process deletes a key. Each case here makes the change for real on SoftHSM and checks
the error the next operation raises, and what the backend did (or did not) reset. So do
calls that fail half-way: a session left mid-operation, a key made in part.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from hsm import pkcs11 as pkcs11_module
from hsm.base import KemAlgorithm, KeyAlgorithm, KeyHandle, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import (
    DecapsulationError,
    KeyNotFound,
    KeyUsageError,
    PermanentBackendError,
    TransientBackendError,
    UnsupportedAlgorithm,
)
from hsm.pkcs11 import Pkcs11Backend, Pkcs11Config
from hsm.policy import public_key_der
from hsm.token_session import TokenLink, TokenSession

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
    handle = _next_session(backend)
    with pytest.raises(DecapsulationError):
        backend._link.run(_failing_once(calls), "decapsulate", peer_input=True)
    assert calls == ["run"]
    # Not from a single-part call (a lookup, say): the session may be mid-search, closed.
    assert _next_session(backend) != handle


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


class _Mechanism(ctypes.Structure):
    _fields_ = [
        ("mechanism", ctypes.c_ulong),
        ("parameter", ctypes.c_void_p),
        ("length", ctypes.c_ulong),
    ]


def _sign_init(session: TokenSession, ck_id: bytes) -> None:
    """C_SignInit alone, through the module's own entry point: the C_Sign never follows."""
    private = session.find(ObjectClass.PRIVATE_KEY, ck_id)
    mechanism = _Mechanism(int(Mechanism.ECDSA), None, 0)
    rv = ctypes.CDLL(SOFTHSM_MODULE).C_SignInit(
        ctypes.c_ulong(session.session.handle),
        ctypes.byref(mechanism),
        ctypes.c_ulong(private.handle),
    )
    assert rv == 0


def _session_is_open(handle: int) -> bool:
    """True while SoftHSM knows the session (C_GetSessionInfo into a CK_SESSION_INFO)."""
    info = (ctypes.c_ulong * 4)()
    with cryptoki(SOFTHSM_MODULE).lock:
        return ctypes.CDLL(SOFTHSM_MODULE).C_GetSessionInfo(ctypes.c_ulong(handle), info) == 0


@pytest.mark.integration
def test_a_session_left_mid_operation_by_an_error_is_closed_not_reused(
    backend: Pkcs11Backend,
) -> None:
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    ck_id = backend.object_id(key)
    handles: list[int] = []

    def interrupted(session: TokenSession) -> None:
        handles.append(session.session.handle)
        _sign_init(session, ck_id)
        raise RuntimeError("interrupted between C_SignInit and C_Sign")

    with pytest.raises(RuntimeError, match="interrupted"):
        backend._link.run(interrupted, "sign")
    # Given back to the pool, the session would answer every C_SignInit with
    # CKR_OPERATION_ACTIVE: each later signature failed "cannot sign now".
    for _ in range(3):
        verify(key.public_key, backend.sign(key, DATA), DATA)
    assert not _session_is_open(handles[0])


@pytest.mark.integration
def test_a_session_that_answers_operation_active_is_closed_and_the_call_runs_on_another(
    backend: Pkcs11Backend,
) -> None:
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    ck_id = backend.object_id(key)
    handles: list[int] = []

    def left_active(session: TokenSession) -> None:
        handles.append(session.session.handle)
        _sign_init(session, ck_id)  # and returns: nothing tells the pool

    backend._link.run(left_active, "sign")
    # The first signature meets CKR_OPERATION_ACTIVE on the pooled session. Taken for a
    # busy token, it was raised and the session went back to the pool to fail again;
    # the session is closed instead, and the signature made on a new one.
    for _ in range(3):
        verify(key.public_key, backend.sign(key, DATA), DATA)
    assert not _session_is_open(handles[0])


def _next_session(backend: Pkcs11Backend) -> int:
    """The handle of the session the next call runs on (one thread: the last given back)."""
    return backend._link.run(lambda session: session.session.handle, "look at a session")


@pytest.mark.integration
@pytest.mark.parametrize(
    "garbage",
    [bytes(256), b"\xff" * 256, bytes(255)],
    ids=["bad-padding", "above-the-modulus", "wrong-length"],
)
def test_a_ciphertext_the_token_refuses_leaves_its_session_in_the_pool(
    backend: Pkcs11Backend, garbage: bytes
) -> None:
    # Anyone reaching the open CA port can send one. SoftHSM 2.6 refuses each with
    # CKR_GENERAL_ERROR and ends the C_Decrypt; closing the session anyway cost a
    # session, a key lookup and the module lock per bad ciphertext.
    key = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    assert key.kem is not None
    ciphertext, secret = encapsulate(key)
    assert backend.decapsulate(key, key.kem, ciphertext) == secret
    handle = _next_session(backend)
    with pytest.raises(DecapsulationError):
        backend.decapsulate(key, key.kem, garbage)
    assert _next_session(backend) == handle
    assert backend.decapsulate(key, key.kem, ciphertext) == secret
    assert _next_session(backend) == handle  # and that call ran on it too


@pytest.mark.integration
def test_two_objects_with_one_key_id_leave_no_search_open(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    other = backend.generate("other", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    ck_id = backend.object_id(key)
    # Another tool makes a key pair under the same CKA_ID.
    pkcs11_tool(token, "--keypairgen", "--key-type", "EC:prime256v1", "--id", ck_id.hex())

    def look_up_then_search(session: TokenSession) -> tuple[object, int]:
        with pytest.raises(p11.MultipleObjectsReturned) as caught:
            session.find(ObjectClass.PRIVATE_KEY, ck_id)
        # With that error still held (a caller logging it, say), the session searches.
        # python-pkcs11's get_key left its search active until the error was dropped.
        found = list(session.session.get_objects({Attribute.ID: ck_id}))
        return caught, len(found)

    held, found = backend._link.run(look_up_then_search, "look up a key", retry=False)
    assert found == 4  # two key pairs
    with pytest.raises(PermanentBackendError, match="MultipleObjectsReturned") as failed:
        backend.sign(key, DATA)
    # Another thread, with the error still held, signs with another key.
    signatures: list[bytes] = []
    signer = threading.Thread(target=lambda: signatures.append(backend.sign(other, DATA)))
    signer.start()
    signer.join(timeout=10)
    assert not signer.is_alive() and len(signatures) == 1
    verify(other.public_key, signatures[0], DATA)
    del held, failed


def _objects_on(token: SoftToken) -> list[str]:
    """The first line of each object pkcs11-tool lists on the token (logged in)."""
    listing = pkcs11_tool(token, "--list-objects").stdout
    return [line for line in listing.splitlines() if line and not line.startswith(" ")]


@pytest.mark.integration
def test_an_import_the_token_refuses_half_way_leaves_nothing_behind(
    backend: Pkcs11Backend, token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = rsa.generate_private_key(65537, 2048)
    complete = pkcs11_module.import_attributes

    def without_modulus(*args: Any) -> tuple[dict[Attribute, Any], dict[Attribute, Any]]:
        private, public = complete(*args)
        del public[Attribute.MODULUS]  # SoftHSM refuses it: CKR_TEMPLATE_INCOMPLETE
        return private, public

    monkeypatch.setattr(pkcs11_module, "import_attributes", without_modulus)
    with pytest.raises(UnsupportedAlgorithm, match="TemplateIncomplete"):
        backend.import_key("imported", KeyUsage.SIGNATURE, made)
    # The private key stayed, without its metadata, and was adopted as a key of its own.
    assert backend.list_keys() == []
    # SoftHSM also kept the public key it refused (with the template's label and id).
    assert _objects_on(token) == []
    monkeypatch.undo()
    assert backend.import_key("imported", KeyUsage.SIGNATURE, made).version == 1


class _ReplyLost:
    """A real session whose n-th object-making call is done on the token, then fails.

    As when the token's answer is lost on the way back (a network HSM): the object
    exists, and the caller sees only an error.
    """

    def __init__(self, session: Any, calls: list[str], fail_at: int) -> None:
        self._session = session
        self._calls = calls
        self._fail_at = fail_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def create_object(self, *args: Any, **kwargs: Any) -> Any:
        return self._made("create_object", *args, **kwargs)

    def generate_keypair(self, *args: Any, **kwargs: Any) -> Any:
        return self._made("generate_keypair", *args, **kwargs)

    def _made(self, call: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self._session, call)(*args, **kwargs)
        self._calls.append(call)
        if len(self._calls) == self._fail_at:
            raise p11.DeviceMemory()
        return result


@pytest.mark.integration
@pytest.mark.parametrize(
    ("how", "fail_at"),
    # The last step of each is the metadata that vouches for the key made.
    [("generate", step) for step in (1, 2, 3)] + [("import", step) for step in (1, 2, 3, 4)],
)
def test_key_creation_is_all_or_nothing(
    backend: Pkcs11Backend,
    token: SoftToken,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    fail_at: int,
) -> None:
    calls: list[str] = []
    opened = TokenLink._session_for

    def losing(link: TokenLink, lease: Any) -> TokenSession:
        item = opened(link, lease)
        return replace(item, session=_ReplyLost(item.session, calls, fail_at))

    def make() -> KeyHandle:
        if how == "generate":
            return backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        private = ec.generate_private_key(ec.SECP256R1())
        return backend.import_key("k", KeyUsage.SIGNATURE, private)

    monkeypatch.setattr(TokenLink, "_session_for", losing)
    with pytest.raises(TransientBackendError, match="DeviceMemory"):
        make()
    assert len(calls) == fail_at  # the failing step was made on the token
    monkeypatch.undo()
    assert backend.list_keys() == []
    assert _objects_on(token) == []
    made = make()
    assert made.version == 1
    verify(made.public_key, backend.sign(made, DATA), DATA)
