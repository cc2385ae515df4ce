"""A renewal of the gateway's keys that fails while putting the old files back, or that is
killed part way: the bank starts on what is left, and the next renewal finishes the job.

A kill is a real one: the renewal runs in a process of its own (this module, run as a
program) that ends with ``os._exit`` at the step named, running no handler; the bank is
then started as an operator starts it.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main as setpay
from gateway import gateway_renewal
from gateway.bank_pki import (
    GATEWAY_KEX_LABEL,
    GATEWAY_SIG_LABEL,
    ProvisioningError,
    open_ca_store,
)
from gateway.ca.errors import CaUnavailable
from gateway.config import load
from gateway.gateway_renewal import renew_gateway_keys
from gateway.provisioning import GATEWAY_NAME
from setcore.authorization import open_auth_response
from setcore.encoding import thumbprint

from .actors import auth_request, authorize, purchase, register_cardholder, register_merchant
from .advised_commands import advised, advised_argv, spaced_root
from .renewal_support import key_versions
from .test_gateway_renewal import APPROVED, Served, certificate, refreshed

# The exit status of a renewal killed at its step: one the renewal never exits with.
KILLED = 75
# A renewal's process imports the project and makes two keys: ample on a slow machine.
RENEWAL_SECONDS = 120.0
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    # In a directory a shell would split: every command these failures advise names it.
    bank = Served(spaced_root(tmp_path) / "bank")
    yield bank
    bank.stop()


def _gateway_certificates(served: Served) -> dict[bytes, bool]:
    """The gateway's own certificates in ca.db: revoked or not, by thumbprint."""
    store = open_ca_store(served.config())
    try:
        with store.read() as tx:
            listed = tx.listed_certificates(subject=GATEWAY_NAME)
            return {cert.thumb: revoked is not None for cert, revoked in listed}
    finally:
        store.close()


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_putting_back_takes_nothing_back(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = served.world
    merchant = register_merchant(world, "M-faults-1")
    cardholder = register_cardholder(world)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 900))
    served.stop()
    directory, certs = served.directory, served.directory / "certs"
    old_sig = certificate(directory, "gateway-sig.der")
    real_replace, real_open = os.replace, os.open

    def signature_rename_fails(source: str, target: str) -> None:
        # Renamed after the key exchange one; the key store's own renames go through.
        if Path(target) == certs / "gateway-sig.der":
            _no_space()
        real_replace(source, target)

    def putting_back_fails(path: str, flags: int, mode: int = 0o777, **kwargs: int) -> int:
        if str(path).endswith(".old"):  # the old certificate, to be renamed back
            _no_space()
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "replace", signature_rename_fails)
    monkeypatch.setattr(os, "open", putting_back_fails)
    with pytest.raises((ProvisioningError, OSError)) as raised:
        renew_gateway_keys(served.config())
    monkeypatch.undo()

    # Nothing taken back: the older certificate kept, the new keys and certificates.
    assert (certs / "gateway-kex.v1.der").read_bytes() == merchant.gateway_kex.der
    new_kex = certificate(directory, "gateway-kex.der")
    assert new_kex != merchant.gateway_kex.der
    assert certificate(directory, "gateway-sig.der") == old_sig
    assert {(GATEWAY_SIG_LABEL, 2), (GATEWAY_KEX_LABEL, 2)} <= key_versions(served.config())
    recorded = _gateway_certificates(served)
    assert recorded[thumbprint(new_kex)] is False

    # The bank starts on it: signs with the old key, opens both key-exchange keys.
    world = served.start()
    result = open_auth_response(
        world.gateway.Authorize(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == APPROVED and result.gateway.thumbprint == thumbprint(old_sig)
    fresh = refreshed(world, merchant)
    assert fresh.gateway_kex.der == new_kex
    assert authorize(world, fresh, purchase(fresh, cardholder, 800)).auth_code == APPROVED

    # Its own error, saying what is in place and what to do.
    assert isinstance(raised.value, gateway_renewal.RenewalHalfInstalled)
    message = str(raised.value)
    assert "in place now: gateway-kex.der renewed, gateway-sig.der as before" in message
    args = advised(message, served.directory / "setpay.toml")
    assert (args.command, args.ca_command) == ("ca", "renew-gateway")

    # Which finishes the job: the signature certificate no file holds is revoked.
    served.stop()
    again = renew_gateway_keys(served.config())
    assert (again.signature.version, again.key_exchange.version) == (3, 3)
    recorded = _gateway_certificates(served)
    assert sorted(recorded.values()) == [False] * 5 + [True]
    world = served.start()
    bought = authorize(world, refreshed(world, merchant), purchase(fresh, cardholder, 700))
    assert bought.auth_code == APPROVED and bought.gateway.thumbprint == again.signature.thumb


def test_a_recorded_certificate_that_cannot_be_revoked_is_named_with_its_command(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that fails as it renames its certificates into place revokes the two it
    recorded; one ca.db does not let it revoke is named, with the command that does."""
    served.stop()
    before = _gateway_certificates(served)
    kex_target = served.directory / "certs" / "gateway-kex.der"
    real_replace = os.replace

    def kex_rename_fails(source: str, target: str) -> None:
        # The first rename of the install: nothing to put back, so the renewal is taken
        # back whole (the key store's own renames go through).
        if Path(target) == kex_target:
            _no_space()
        real_replace(source, target)

    def revoke_fails(*args: object, **kwargs: object) -> None:
        raise CaUnavailable("ca.db is locked")

    monkeypatch.setattr(os, "replace", kex_rename_fails)
    monkeypatch.setattr(gateway_renewal, "revoke", revoke_fails)
    with caplog.at_level(logging.WARNING, logger="setpay"), pytest.raises(OSError):
        renew_gateway_keys(served.config())
    monkeypatch.undo()

    recorded = _gateway_certificates(served)
    left = {thumb for thumb, revoked in recorded.items() if thumb not in before and not revoked}
    assert len(left) == 2  # the signature and key-exchange certificates it recorded
    named = [r.getMessage() for r in caplog.records if "could not be revoked" in r.getMessage()]
    # Each is named, with ca.db's reason and the command that revokes it, for this bank's
    # configuration, as the real CLI reads it; run as pasted, it revokes it.
    advised_thumbs = set()
    for message in named:
        assert "ca.db is locked" in message
        args = advised(message, served.directory / "setpay.toml")
        assert (args.command, args.ca_command) == ("ca", "revoke")
        assert args.thumb.hex() in message.split("`")[0]
        advised_thumbs.add(args.thumb)
    assert advised_thumbs == left and len(named) == 2
    for message in named:
        assert setpay(advised_argv(message)[1:]) == 0
    assert {t for t, revoked in _gateway_certificates(served).items() if revoked} == left


def test_finished_renewals_leave_nothing_to_revoke(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The signature certificates finished renewals replaced certify older versions: they
    stay live (they signed answers the bank stored), and nothing warns about them."""
    with caplog.at_level(logging.WARNING, logger="setpay"):
        served.renew()
        served.renew()
    assert not [r for r in caplog.records if "no file in" in r.getMessage()]
    recorded = _gateway_certificates(served)
    assert len(recorded) == 6 and not any(recorded.values())


# --- killed part way -------------------------------------------------------------------

WINDOWS = {
    # window: the live certificates in ca.db no file holds after it
    "keys made": 0,
    "certificates stored on the keys": 0,
    "files staged": 0,
    "ca.db recorded": 2,
    "between the renames": 1,
}


def _kill_at(window: str) -> None:
    """In the renewal's own process: end it at ``window``, running no handler."""

    def die(*args: object, **kwargs: object) -> None:
        os._exit(KILLED)

    real_replace, real_install = os.replace, gateway_renewal._install

    def die_after_one(source: str, target: str) -> None:
        real_replace(source, target)
        os._exit(KILLED)

    def install(*args: object) -> None:
        # Only the renames of the install: the key store renames files too.
        os.replace = die_after_one  # type: ignore[assignment]
        real_install(*args)  # type: ignore[arg-type]

    steps = {
        "keys made": ("_issue", die),
        "certificates stored on the keys": ("_stage", die),
        "files staged": ("_record", die),
        "ca.db recorded": ("_install", die),
    }
    if window == "between the renames":
        gateway_renewal._install = install  # type: ignore[assignment]
    else:
        name, step = steps[window]
        setattr(gateway_renewal, name, step)


def _killed_renewal(served: Served, window: str) -> None:
    program = [sys.executable, "-m", __name__, str(served.directory / "setpay.toml"), window]
    killed = subprocess.run(
        program, env={**os.environ, **served.ports}, cwd=PROJECT, capture_output=True,
        text=True, timeout=RENEWAL_SECONDS, check=False,
    )  # fmt: skip
    assert killed.returncode == KILLED, killed.stderr


@pytest.mark.parametrize("window", WINDOWS)
def test_a_renewal_killed_part_way_leaves_a_bank_that_starts(
    served: Served, window: str, caplog: pytest.LogCaptureFixture
) -> None:
    world = served.world
    merchant = register_merchant(world, "M-killed")
    cardholder = register_cardholder(world)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 600))
    old_sig = certificate(served.directory, "gateway-sig.der")
    served.stop()
    _killed_renewal(served, window)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="setpay.bank"):
        world = served.start()
    unused = [r.getMessage() for r in caplog.records if "that no file in" in r.getMessage()]
    assert len(unused) == WINDOWS[window], unused
    # Each names the command that revokes it, for this bank's configuration, as the real
    # CLI reads it: the very certificates the next renewal revokes (checked below).
    named = set()
    for message in unused:
        args = advised(message, served.directory / "setpay.toml")
        assert (args.command, args.ca_command) == ("ca", "revoke")
        assert f": {args.thumb.hex()};" in message
        named.add(args.thumb)
    result = open_auth_response(
        world.gateway.Authorize(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == APPROVED and result.gateway.thumbprint == thumbprint(old_sig)
    handed_out = refreshed(world, merchant).gateway_kex.der
    assert (handed_out == merchant.gateway_kex.der) == (window != "between the renames")
    assert not any(_gateway_certificates(served).values())

    # The next renewal revokes what no file holds, and renews.
    served.stop()
    renewal = renew_gateway_keys(served.config())
    assert (renewal.signature.version, renewal.key_exchange.version) == (3, 3)
    revoked = {thumb for thumb, gone in _gateway_certificates(served).items() if gone}
    assert revoked == named and len(named) == WINDOWS[window]
    world = served.start()
    after = authorize(world, merchant, purchase(merchant, cardholder, 500))
    assert after.auth_code == APPROVED and after.gateway.thumbprint == renewal.signature.thumb


if __name__ == "__main__":
    _kill_at(sys.argv[2])
    renew_gateway_keys(load(Path(sys.argv[1]), env=os.environ))
    sys.exit(0)  # not killed: the test says so
