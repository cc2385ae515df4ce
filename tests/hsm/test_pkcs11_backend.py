"""PKCS#11 backend on a real SoftHSM token: interoperability, concurrency, failures.

Outside tools (openssl, pkcs11-tool) check what the backend put on the token and what it
signed; a test fails loudly when a tool is missing.
"""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from pkcs11 import Attribute, ObjectClass

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyBackend, KeyUsage
from hsm.errors import (
    KeyBackendError,
    KeyExists,
    KeyNotFound,
    KeyUsageError,
    PermanentBackendError,
    UnsupportedAlgorithm,
)
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_session import ABSENT_RESCAN_SECONDS, TokenSession
from hsm.uri import open_backend

from .keycheck import encapsulate, public_pem, verify
from .testbed import DATA, CountingPinSource, SoftHsm, SoftToken, pkcs11_tool, run_tool


@pytest.fixture
def backend(pkcs11_backend: Pkcs11Backend) -> Pkcs11Backend:
    """The PKCS#11 backend alone (overrides the contract suite's fixture)."""
    return pkcs11_backend


def _openssl_verify(
    tmp_path: Path, algorithm: KeyAlgorithm, pem: bytes, sig: bytes, data: bytes
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pub.pem").write_bytes(pem)
    (tmp_path / "sig.bin").write_bytes(sig)
    (tmp_path / "data.bin").write_bytes(data)
    files = {name: str(tmp_path / name) for name in ("pub.pem", "sig.bin", "data.bin")}
    if algorithm is KeyAlgorithm.ED25519:
        argv = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", files["pub.pem"], "-rawin"]
        argv += ["-in", files["data.bin"], "-sigfile", files["sig.bin"]]
    else:
        argv = ["openssl", "dgst", "-sha256", "-verify", files["pub.pem"]]
        if algorithm.is_rsa:
            argv += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]
            argv += ["-sigopt", "rsa_mgf1_md:sha256"]
        argv += ["-signature", files["sig.bin"], files["data.bin"]]
    return run_tool(*argv, check=False)


@pytest.mark.integration
@pytest.mark.parametrize(
    "algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519, KeyAlgorithm.RSA_2048]
)
def test_token_signatures_verify_with_openssl(
    backend: Pkcs11Backend, tmp_path: Path, algorithm: KeyAlgorithm
) -> None:
    key = backend.generate("openssl-check", KeyUsage.SIGNATURE, algorithm)
    signature = backend.sign(key, DATA)
    pem = public_pem(key.public_key)
    good = _openssl_verify(tmp_path, algorithm, pem, signature, DATA)
    assert good.returncode == 0, good.stderr
    assert "Verified" in good.stdout or "Verified" in good.stderr
    bad = _openssl_verify(tmp_path, algorithm, pem, signature, DATA + b"tampered")
    assert bad.returncode != 0


@pytest.mark.integration
def test_pkcs11_tool_signing_key_is_used_by_setpay(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    # pkcs11-tool 0.23 ignores --label when signing, so keys are made with an --id.
    pkcs11_tool(
        token, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "0a0b0c",
        "--label", "foreign-ec", "--usage-sign",
    )  # fmt: skip
    signing = backend.get("foreign-ec")
    assert (signing.version, signing.usage, signing.algorithm) == (
        1,
        KeyUsage.SIGNATURE,
        KeyAlgorithm.EC_P256,
    )
    verify(signing.public_key, backend.sign(signing, DATA), DATA)


@pytest.mark.integration
def test_pkcs11_tool_rsa_key_is_adopted_and_narrowed(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    # SoftHSM gives every RSA key CKA_SIGN and CKA_DECRYPT; pkcs11-tool cannot remove
    # either, so the usage is ambiguous until an operator declares it.
    pkcs11_tool(
        token, "--keypairgen", "--key-type", "rsa:2048", "--id", "0d0e0f",
        "--label", "foreign-rsa", "--usage-decrypt",
    )  # fmt: skip
    with pytest.raises(KeyNotFound, match="foreign-rsa"):
        backend.get("foreign-rsa")
    kex = backend.adopt(bytes.fromhex("0d0e0f"), "gateway-kex", KeyUsage.KEY_EXCHANGE)
    assert (kex.label, kex.version, kex.usage, kex.algorithm, kex.kem) == (
        "gateway-kex",
        1,
        KeyUsage.KEY_EXCHANGE,
        KeyAlgorithm.RSA_2048,
        KemAlgorithm.RSA_OAEP_SHA1,
    )
    ciphertext, secret = encapsulate(kex)
    assert backend.decapsulate(kex, KemAlgorithm.RSA_OAEP_SHA1, ciphertext) == secret
    with pytest.raises(KeyUsageError):
        backend.sign(kex, DATA)
    listing = pkcs11_tool(token, "--list-objects", "--type", "privkey", "--id", "0d0e0f").stdout
    assert "Usage:      decrypt\n" in listing  # sign and unwrap were switched off
    with pytest.raises(KeyExists, match="already key 'gateway-kex' v1"):
        backend.adopt(bytes.fromhex("0d0e0f"), "again", KeyUsage.KEY_EXCHANGE)
    with pytest.raises(KeyNotFound, match="CKA_ID 0f0f0f"):
        backend.adopt(bytes.fromhex("0f0f0f"), "nothing", KeyUsage.SIGNATURE)


@pytest.mark.integration
def test_ambiguous_foreign_keys_are_not_adopted(backend: Pkcs11Backend, token: SoftToken) -> None:
    pkcs11_tool(
        token, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01",
        "--label", "both-ways", "--usage-sign", "--usage-derive",
    )  # fmt: skip
    with pytest.raises(KeyNotFound, match="both-ways"):
        backend.get("both-ways")
    adopted = backend.adopt(b"\x01", "both-ways", KeyUsage.KEY_EXCHANGE)
    assert (adopted.version, adopted.kem) == (1, KemAlgorithm.P256_HKDF_SHA256)


def _listed_objects(listing: str) -> list[dict[str, str]]:
    """pkcs11-tool --list-objects output as one dict per object ("type" = header line)."""
    objects: list[dict[str, str]] = []
    for line in listing.splitlines():
        if line and not line.startswith(" "):
            objects.append({"type": line.strip()})
        elif ":" in line and objects:
            name, _, value = line.strip().partition(":")
            objects[-1][name.strip()] = value.strip().strip("'")
    return objects


@pytest.mark.integration
def test_setpay_keys_are_listed_by_pkcs11_tool(backend: Pkcs11Backend, token: SoftToken) -> None:
    backend.generate("listed-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("listed-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    objects = _listed_objects(pkcs11_tool(token, "--list-objects").stdout)
    private = {o["label"]: o for o in objects if o["type"].startswith("Private Key Object")}
    public = {o["label"]: o for o in objects if o["type"].startswith("Public Key Object")}
    data = sorted(o["label"] for o in objects if o.get("application") == "setpay")
    assert sorted(private) == sorted(public) == data == ["listed-kex", "listed-sig"]
    for label in data:
        ck_id = backend.object_id(backend.get(label)).hex()
        assert private[label]["ID"] == public[label]["ID"] == ck_id
        assert private[label]["Access"] == "sensitive, always sensitive, never extractable, local"
    assert private["listed-sig"]["Usage"] == "sign"
    assert private["listed-kex"]["Usage"] == "derive"
    assert public["listed-sig"]["Usage"] == "verify"


@pytest.mark.integration
def test_token_itself_refuses_a_key_exchange_key_to_sign(
    backend: Pkcs11Backend, token: SoftToken, tmp_path: Path
) -> None:
    key = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    (tmp_path / "digest").write_bytes(bytes(32))
    done = pkcs11_tool(
        token, "--sign", "--mechanism", "ECDSA", "--id", backend.object_id(key).hex(),
        "--input-file", str(tmp_path / "digest"), "--output-file", str(tmp_path / "sig"),
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "CKR_KEY_FUNCTION_NOT_PERMITTED" in done.stdout + done.stderr


@pytest.mark.integration
def test_oaep_variant_detected_by_trial(backend: Pkcs11Backend) -> None:
    assert backend.rsa_kem is None  # no RSA decryption key yet: nothing to try with
    key = backend.generate("rsa-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    # SoftHSM 2.6 refuses OAEP with SHA-256 (CKR_ARGUMENTS_BAD): the token's best is SHA-1.
    assert backend.rsa_kem is KemAlgorithm.RSA_OAEP_SHA1
    assert key.kem is KemAlgorithm.RSA_OAEP_SHA1
    ciphertext, _ = encapsulate(key, KemAlgorithm.RSA_OAEP_SHA256)
    with pytest.raises(UnsupportedAlgorithm, match="accepts rsa-oaep-sha1, not rsa-oaep-sha256"):
        backend.decapsulate(key, KemAlgorithm.RSA_OAEP_SHA256, ciphertext)


@pytest.mark.integration
def test_token_by_serial_and_by_uri(token: SoftToken) -> None:
    by_label = open_backend(token.uri())
    made = by_label.generate("shared", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    by_serial = Pkcs11Backend(replace(token.config(), token_label=None, token_serial=token.serial))
    try:
        assert by_serial.get("shared").public_key == made.public_key
    finally:
        by_serial.close()
        by_label.close()


@pytest.mark.integration
def test_eight_threads_thousand_signatures_each(backend: Pkcs11Backend) -> None:
    key = backend.generate("hot", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    errors: list[BaseException] = []
    counts = [0] * 8

    def worker(index: int) -> None:
        try:
            for n in range(1000):
                data = b"%d/%d" % (index, n)
                signature = backend.sign(key, data)
                if n % 50 == 0:  # verifying every one would triple the test's time
                    verify(key.public_key, signature, data)
                counts[index] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert counts == [1000] * 8


def _sign_in_child(config: object, barrier: object, results: object) -> None:
    """Worker process: open the token at the same moment as its siblings, log in, sign."""
    try:
        barrier.wait(30)  # type: ignore[attr-defined]
        backend = Pkcs11Backend(config)  # type: ignore[arg-type]
        key = backend.get("shared")
        verify(key.public_key, backend.sign(key, DATA), DATA)
        backend.close()
        results.put("ok")  # type: ignore[attr-defined]
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.slow
def test_four_processes_log_in_together_twenty_rounds(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    # The parent has the module initialized and logged in: every child inherits that
    # state through fork and must re-initialize rather than use it.
    backend.generate("shared", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for _ in range(20):
        barrier = context.Barrier(4)
        results = context.Queue()
        workers = [
            context.Process(target=_sign_in_child, args=(token.config(), barrier, results))
            for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        outcomes += [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
    # The failures themselves, not a truncated list of eighty strings, if any.
    assert [outcome for outcome in outcomes if outcome != "ok"] == []
    assert len(outcomes) == 80
    # The parent's own sessions survived its children.
    verify(backend.get("shared").public_key, backend.sign(backend.get("shared"), DATA), DATA)


def _sign_with_inherited(backend: Pkcs11Backend, results: object) -> None:
    try:
        key = backend.get("inherited")  # a lookup in the copied catalogue: no token call
        verify(key.public_key, backend.sign(key, DATA), DATA)
        results.put("ok")  # type: ignore[attr-defined]
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
    backend.close()  # allowed, and closes nothing of the parent's


@pytest.mark.integration
def test_backend_inherited_through_fork_is_refused_in_the_child(backend: Pkcs11Backend) -> None:
    # Logging in again there would first finalize module state the fork copied (with a
    # client-server HSM library, the parent's connections).
    backend.generate("inherited", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_sign_with_inherited, args=(backend, results))
    child.start()
    outcome = results.get(timeout=60)
    child.join(timeout=60)
    assert outcome.startswith("PermanentBackendError: "), outcome
    assert "opened before fork: open the key backend in this process" in outcome
    key = backend.get("inherited")
    verify(key.public_key, backend.sign(key, DATA), DATA)


@pytest.mark.integration
def test_wrong_pin_is_permanent_immediate_and_not_shown(token: SoftToken, tmp_path: Path) -> None:
    wrong_file = tmp_path / "wrong.pin"
    wrong_file.write_text("999999-wrong")
    wrong_file.chmod(0o600)
    source = CountingPinSource("file", str(wrong_file))
    with pytest.raises(PermanentBackendError) as caught:
        Pkcs11Backend(replace(token.config(), pin_source=source))
    message = str(caught.value)
    assert f"token {token.label!r}: login refused (PinIncorrect)" in message
    assert str(wrong_file) in message
    assert "999999" not in message
    assert token.pin not in message
    # A wrong PIN is never retried: real HSMs lock the PIN after a few tries.
    assert source.reads == ["read"]
    # The right PIN still works: nothing was locked by the refusal.
    Pkcs11Backend(token.config()).close()


@pytest.mark.integration
def test_unknown_token_is_permanent_and_named(token: SoftToken) -> None:
    with pytest.raises(PermanentBackendError, match="no token 'no-such-token' in PKCS#11 module"):
        Pkcs11Backend(replace(token.config(), token_label="no-such-token"))
    serial = "".join(digit * 4 for digit in "0123")  # no token's: 16 characters, as a serial
    with pytest.raises(PermanentBackendError, match=f"no token with serial '{serial}'"):
        Pkcs11Backend(replace(token.config(), token_label=None, token_serial=serial))


@pytest.mark.integration
def test_missing_module_is_permanent(token: SoftToken, tmp_path: Path) -> None:
    missing = str(tmp_path / "libnothing.so")
    with pytest.raises(PermanentBackendError, match=r"cannot load PKCS#11 module .*libnothing"):
        Pkcs11Backend(replace(token.config(), module=missing))


@pytest.mark.integration
def test_unknown_key_and_wrong_usage_are_named(backend: Pkcs11Backend, token: SoftToken) -> None:
    with pytest.raises(KeyNotFound, match=f"no key 'gateway-sig' on token '{token.label}'"):
        backend.get("gateway-sig")
    kex = backend.generate("gateway-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    with pytest.raises(KeyUsageError, match="key 'gateway-kex' v1 has usage key-exchange"):
        backend.sign(kex, DATA)


@pytest.mark.integration
def test_two_backends_on_one_token_survive_each_other(token: SoftToken) -> None:
    first = Pkcs11Backend(token.config())
    second = Pkcs11Backend(token.config())  # the process is already logged in
    key = first.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    verify(key.public_key, second.sign(second.get("k"), DATA), DATA)
    first.close()
    verify(key.public_key, second.sign(second.get("k"), DATA), DATA)
    second.close()


@pytest.mark.integration
def test_token_disappears_and_comes_back(
    token: SoftToken, softhsm: SoftHsm, tmp_path: Path
) -> None:
    events: list[tuple[str, str | None]] = []
    backend = Pkcs11Backend(token.config(), lambda op, _a, _s, err: events.append((op, err)))
    other_token = softhsm.init_token()
    bystander = Pkcs11Backend(other_token.config())
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    other_key = bystander.generate("other", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    started = time.monotonic()
    timeline: list[tuple[int, str, str]] = []

    def step(what: str, action: object) -> None:
        try:
            action()  # type: ignore[operator]
            outcome = "ok"
        except KeyBackendError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        timeline.append((int((time.monotonic() - started) * 1000), what, outcome))

    step("sign", lambda: backend.sign(key, DATA))
    step("health", backend.check_health)
    token.directory.rename(tmp_path / "token-away")
    step("token moved away", lambda: None)
    step("sign", lambda: backend.sign(key, DATA))
    step("sign", lambda: backend.sign(key, DATA))
    step("health", backend.check_health)
    step("list_keys", backend.list_keys)
    step("get unknown", lambda: backend.get("unknown"))
    step("other token sign", lambda: bystander.sign(other_key, DATA))
    # A newcomer rescans the module while the token is away: the lost backend must still
    # rescan for itself once the token is back.
    newcomer_token = softhsm.init_token()
    step("newcomer opens", lambda: Pkcs11Backend(newcomer_token.config()).close())
    (tmp_path / "token-away").rename(token.directory)
    step("token moved back", lambda: None)
    step("next rescan due", lambda: time.sleep(ABSENT_RESCAN_SECONDS))
    step("sign", lambda: backend.sign(key, DATA))
    step("health", backend.check_health)
    step("sign", lambda: backend.sign(key, DATA))
    step("other token sign", lambda: bystander.sign(other_key, DATA))
    for at, what, outcome in timeline:
        print(f"{at:6d} ms  {what:<18} {outcome}")
    gone = f"TransientBackendError: token {token.label!r} is not present"
    assert [(what, outcome) for _, what, outcome in timeline] == [
        ("sign", "ok"),
        ("health", "ok"),
        ("token moved away", "ok"),
        ("sign", gone),
        ("sign", gone),
        ("health", gone),
        ("list_keys", gone),
        ("get unknown", gone),
        ("other token sign", "ok"),
        ("newcomer opens", "ok"),
        ("token moved back", "ok"),
        ("next rescan due", "ok"),
        ("sign", "ok"),
        ("health", "ok"),
        ("sign", "ok"),
        ("other token sign", "ok"),
    ]
    assert events[0] == ("login", None)
    assert ("relogin", "TransientBackendError") in events
    assert events[-1] == ("sign", None)
    assert ("relogin", None) in events
    backend.close()
    bystander.close()
    shutil.rmtree(other_token.directory, ignore_errors=True)
    shutil.rmtree(newcomer_token.directory, ignore_errors=True)


@pytest.mark.integration
def test_login_is_reported_to_the_observer(token: SoftToken) -> None:
    events: list[tuple[str, str, str | None]] = []
    backend: KeyBackend = Pkcs11Backend(
        token.config(), lambda op, algorithm, _s, err: events.append((op, algorithm, err))
    )
    backend.close()
    assert events == [("login", "", None)]


@pytest.mark.integration
def test_ecdh_secret_objects_do_not_accumulate(backend: Pkcs11Backend) -> None:
    key = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    for _ in range(20):
        point, expected = encapsulate(key)
        assert backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, point) == expected

    def secret_objects(session: TokenSession) -> int:
        # Session objects are visible to every session of this process, and only to it.
        return len(list(session.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})))

    assert backend._link.run(secret_objects, "count secret objects") == 0
