"""Key URIs: parsing, refusal of secrets, redaction for logs, opening backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import InvalidKeyURI, PermanentBackendError
from hsm.pinsource import PinSource
from hsm.software import SoftwareBackend
from hsm.uri import (
    PASSPHRASE_ENV,
    Pkcs11KeyURI,
    SoftwareKeyURI,
    describe_uri,
    open_backend,
    parse_key_uri,
)

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def test_soft_ephemeral() -> None:
    parsed = parse_key_uri("soft:ephemeral")
    assert isinstance(parsed, SoftwareKeyURI)
    assert parsed.directory is None


def test_soft_directory_defaults_to_passphrase_env() -> None:
    assert parse_key_uri("soft:var/keys") == SoftwareKeyURI(
        "var/keys", PinSource("env", PASSPHRASE_ENV)
    )


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("soft:/srv/ks;pin-source=file:/run/pass", PinSource("file", "/run/pass")),
        ("soft:/srv/ks;pin-source=env:KS_PASS", PinSource("env", "KS_PASS")),
        ("soft:/srv/ks;PIN-SOURCE=env:KS_PASS", PinSource("env", "KS_PASS")),
    ],
)
def test_soft_pin_sources(uri: str, expected: PinSource) -> None:
    assert parse_key_uri(uri) == SoftwareKeyURI("/srv/ks", expected)


def test_soft_directory_is_percent_decoded() -> None:
    parsed = parse_key_uri("soft:/srv/key%3Bstore%20one")
    assert isinstance(parsed, SoftwareKeyURI)
    assert parsed.directory == "/srv/key;store one"


def test_pkcs11_by_label() -> None:
    assert parse_key_uri(f"pkcs11:module={MODULE};token=bank-hsm;pin-source=file:/run/pin") == (
        Pkcs11KeyURI(MODULE, "bank-hsm", None, PinSource("file", "/run/pin"))
    )


def test_pkcs11_by_serial_with_env_pin_and_pool() -> None:
    parsed = parse_key_uri(
        f"pkcs11:module={MODULE};serial=a33782bb0b5cc69e;pin-source=env:HSM_PIN;"
        "x-pool-size=8;x-pool-wait-ms=250"
    )
    assert parsed == Pkcs11KeyURI(
        MODULE, None, "a33782bb0b5cc69e", PinSource("env", "HSM_PIN"), 8, 250
    )


def test_pkcs11_pool_bounds_are_accepted() -> None:
    parsed = parse_key_uri(
        f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-size=64;x-pool-wait-ms=60000"
    )
    assert isinstance(parsed, Pkcs11KeyURI)
    assert (parsed.pool_size, parsed.pool_wait_ms) == (64, 60000)


def test_pkcs11_rfc7512_query_form_and_encoding() -> None:
    parsed = parse_key_uri(
        "pkcs11:token=My%20Bank%20HSM?module-path=/opt/hsm/lib%2Bx.so&pin-source=env:PIN"
    )
    assert parsed == Pkcs11KeyURI("/opt/hsm/lib+x.so", "My Bank HSM", None, PinSource("env", "PIN"))


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("", "no scheme"),
        ("/srv/keys", "no scheme"),
        ("file:/srv/keys", "unknown key URI scheme: expected one of pkcs11, soft$"),
        ("soft:", "needs a keystore directory"),
        ("soft:ephemeral;pin-source=env:X", "takes no pin-source"),
        ("soft:/ks;pin-source=vault:x", "kind is unknown: use file:PATH or env:NAME$"),
        ("soft:/ks;pin-source=env:1PIN", "env:NAME needs a variable name"),
        ("soft:/ks;pin-source=file:", "file:PATH or env:NAME"),
        ("soft:/ks;colour=blue", "attribute 1 is unknown: expected one of pin-source$"),
        ("pkcs11:token=t;pin-source=env:P", "needs module=PATH"),
        (f"pkcs11:module={MODULE};pin-source=env:P", "token=LABEL or serial=SERIAL"),
        (f"pkcs11:module={MODULE};token=t", "needs pin-source"),
        (f"pkcs11:module={MODULE};module-path=/x;token=t;pin-source=env:P", "both module"),
        (f"pkcs11:module={MODULE};token=t;token=u;pin-source=env:P", "appears twice"),
        (f"pkcs11:module={MODULE};slot-id=0;pin-source=env:P", "attribute 2 is unknown"),
        (f"pkcs11:module={MODULE}?token=t&slot=0&pin-source=env:P", "attribute 3 is unknown"),
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-size=0", "from 1 to 64"),
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-size=ten", "from 1 to 64"),
        # str.isdigit() is true for these, and int() refuses the first, takes the second.
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-size=\u00b2", "from 1 to 64"),
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-size=\u0663", "from 1 to 64"),
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-size=%C2%B2", "from 1 to 64"),
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-size=+8", "from 1 to 64"),
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-wait-ms=0", "1 to 60000"),
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-wait-ms=60001", "1 to 60000"),
        (f"pkcs11:module={MODULE};token=t;pin-source=env:P;x-pool-wait-ms=1e3", "1 to 60000"),
        (f"pkcs11:module={MODULE};token;pin-source=env:P", "attribute 2 has no '='"),
        (f"pkcs11:module={MODULE};;token;pin-source=env:P", "attribute 3 has no '='"),
        ("soft:/ks;%ff=1", "attribute 1 in key URI is not valid %-encoded UTF-8"),
        ("soft:/ks%ff", "not valid %-encoded UTF-8"),
    ],
)
def test_malformed_uris_name_the_problem(uri: str, problem: str) -> None:
    with pytest.raises(InvalidKeyURI, match=problem):
        parse_key_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        f"pkcs11:module={MODULE};token=t;pin-value=123456",
        f"pkcs11:token=t?module-path={MODULE}&pin-value=123456",
        "soft:/ks;passphrase=123456",
    ],
)
def test_secrets_in_uris_are_refused_without_echo(uri: str) -> None:
    with pytest.raises(InvalidKeyURI, match="must not carry a secret") as caught:
        parse_key_uri(uri)
    assert "123456" not in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "described"),
    [
        (
            f"pkcs11:module={MODULE};token=t;pin-value=123456",
            f"pkcs11:module={MODULE};token=t;pin-value=***",
        ),
        (
            "pkcs11:token=t?pin-value=123456&module-path=/m.so",
            "pkcs11:token=t?pin-value=***&module-path=/m.so",
        ),
        ("soft:/ks;Passphrase=hunter2", "soft:/ks;Passphrase=***"),
        ("soft:/ks;pin-source=file:/run/pin", "soft:/ks;pin-source=file:/run/pin"),
        (
            f"pkcs11:module={MODULE};token=My%20HSM;pin-source=env:HSM_PIN;x-pool-size=8",
            f"pkcs11:module={MODULE};token=My%20HSM;pin-source=env:HSM_PIN;x-pool-size=8",
        ),
        (
            "pkcs11:serial=a337?module-path=/m.so&pin-source=file:/run/pin&x-pool-wait-ms=250",
            "pkcs11:serial=a337?module-path=/m.so&pin-source=file:/run/pin&x-pool-wait-ms=250",
        ),
        ("pkcs11:token=t;colour=blue;pin-source=vault:x", "pkcs11:token=t;***;pin-source=***"),
        ("soft:/ks;x-pool-size=8", "soft:/ks;***"),
        ("no scheme here", "<key URI without scheme>"),
    ],
)
def test_describe_uri_redacts_secrets(uri: str, described: str) -> None:
    assert describe_uri(uri) == described


@pytest.mark.parametrize(
    ("garbage", "described"),
    [
        ("pkcs11:%ff;=;;==", "pkcs11:***;***;;***"),
        ("soft:;;;", "soft:;;;"),
        (":", "<key URI with an unknown scheme>"),
        ("pkcs11:token=%ff;x-pool-size=0", "pkcs11:token=***;x-pool-size=***"),
        ("pkcs11:?&&pin=1", "pkcs11:?&&pin=***"),
        ("pkcs11:%70in-value=1", "pkcs11:%70in-value=***"),
    ],
)
def test_describe_uri_never_raises_on_garbage(garbage: str, described: str) -> None:
    assert describe_uri(garbage) == described


def test_open_soft_ephemeral() -> None:
    backend = open_backend("soft:ephemeral")
    assert isinstance(backend, SoftwareBackend)
    assert backend.list_keys() == []


def test_open_soft_directory_with_env_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "uri test passphrase")
    uri = f"soft:{tmp_path / 'ks'}"
    made = open_backend(uri).generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert open_backend(uri).get("k").public_key == made.public_key
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(PermanentBackendError, match=f"{PASSPHRASE_ENV} is not set"):
        open_backend(uri)


def test_soft_backends_do_not_load_python_pkcs11(tmp_path: Path) -> None:
    # Run in a fresh interpreter: this one has loaded pkcs11 for other tests.
    code = (
        "import sys\n"
        "from hsm.uri import open_backend\n"
        "open_backend('soft:ephemeral').list_keys()\n"
        "print('pkcs11' in sys.modules, 'hsm.pkcs11' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "False"]


_PASTED = "739184"
_BASE = f"pkcs11:module={MODULE};token=t;pin-source=file:/run/pin"


@pytest.mark.parametrize(
    "uri",
    [
        f"{_BASE};{_PASTED}",
        f"pkcs11:module={MODULE};{_PASTED};token=t;pin-source=file:/run/pin",
        f"{_BASE}?{_PASTED}",
        f"{_BASE};pin={_PASTED}",
        f"{_BASE}?pin-value={_PASTED}",
        f"{_BASE};user-pin={_PASTED}",
        f"{_BASE};{_PASTED}=1",
        f"{_BASE};{_PASTED}%3D",
        f"{_BASE};x-pool-size={_PASTED}",
        f"{_BASE};x-pool-wait-ms={_PASTED}",
        f"{_BASE};pin-source={_PASTED}",
        f"pkcs11:module={MODULE};token=t;pin-source={_PASTED}",
        f"pkcs11:module={MODULE};token=t;pin-source={_PASTED}:x",
        f"pkcs11:module={MODULE};token=t;pin-source=pin:{_PASTED}",
        f"pkcs11:module={MODULE};token=t;pin-source=env:{_PASTED}",
        f"pkcs11:module={MODULE};token=t;pin-source=env:PIN={_PASTED}",
        f"soft:/ks;{_PASTED}",
        f"soft:/ks;pin-source={_PASTED}",
        f"soft:/ks;pin-source=env:{_PASTED}",
        f"soft:/ks;passphrase={_PASTED}",
        f"{_PASTED}:{_PASTED}",
        f"pkcs11{_PASTED}:token=t",
    ],
)
def test_pasted_pin_is_never_echoed(uri: str) -> None:
    with pytest.raises(InvalidKeyURI) as caught:
        parse_key_uri(uri)
    assert _PASTED not in str(caught.value)
    assert _PASTED not in describe_uri(uri)
