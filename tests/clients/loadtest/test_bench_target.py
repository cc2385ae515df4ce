"""``setpay bench authorize --target``: a bank started on its own, as an operator runs one.

The bank listens for its CertificateAuthority on every interface (a container's
``SETPAY_CA_LISTEN=0.0.0.0:PORT``) and runs the workers its configuration names. The bench,
given only the gateway's address and the bank's configuration, must register through the
CA on the loopback, report the configuration's worker count, and leave one hold per
approval in the ledger; run again on the same bank, it registers a merchant of its own.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import bench
from clients.loadtest import spawn
from clients.loadtest.prepare import Population
from setcore.pki.roles import MERCHANT
from setcore.profiles import profile_named

from .conftest import run_bench
from .went_right import went_right

RATE = 20
DURATION = 1.0
CARDHOLDERS = 2
# Not the bench's own spawn default (1): the report must show the target's count.
TARGET_WORKERS = 2


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("bench-target")
    with pytest.MonkeyPatch.context() as env:
        # Read by the bank and by the bench alike, as both load the same configuration:
        # port 0 for the bank, which binds one the OS picks; that one for the bench.
        env.setenv("SETPAY_CA_LISTEN", "0.0.0.0:0")
        env.setenv("SETPAY_WORKERS", str(TARGET_WORKERS))
        config = spawn.init_bank(work / "bank", "ec", None)
        server = spawn.start(
            "bank",
            [
                sys.executable, "-m", "cli.main", "gateway", "serve", "--config", str(config),
                "--listen", "127.0.0.1:0", "--port-file", str(work / "bank.ports"),
                "--metrics-port", spawn.ANY_METRICS_PORT,
            ],
            work / "bank.ports",
            work / "bank.log",
        )  # fmt: skip
        try:
            _, ca_port, metrics_port = server.ports
            env.setenv("SETPAY_CA_LISTEN", f"0.0.0.0:{ca_port}")
            report = work / "report.json"
            argv = [
                "authorize", "--target", server.target, "--bank-config", str(config),
                "--rate", str(RATE), "--duration", str(DURATION),
                "--cardholders", str(CARDHOLDERS), "--channels", "2",
                "--metrics-url", f"http://127.0.0.1:{metrics_port}/metrics",
            ]  # fmt: skip
            code = run_bench([*argv, "--json", str(report)])
            # A failed run writes no report: the first test then shows the exit code.
            found = json.loads(report.read_text()) if report.exists() else {}
            holds = _holds(work)
            # The same bank benched again, as an operator does between changes.
            again_report = work / "again.json"
            again = run_bench([*argv, "--json", str(again_report)])
            found_again = json.loads(again_report.read_text()) if again_report.exists() else {}
            yield {"code": code, "work": work, "report": found, "holds": holds, "again": again,
                   "report_again": found_again}  # fmt: skip
        finally:
            server.stop()


def _holds(work: Path) -> int:
    ledger = work / "bank" / "ledger.db"
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        (holds,) = db.execute("SELECT count(*) FROM holds").fetchone()
    return int(holds)


def test_target_bench_registers_through_a_wildcard_ca_listen(target: dict[str, Any]) -> None:
    assert went_right(target["code"], target["report"]), target["report"].get("doubts")
    (step,) = target["report"]["steps"]
    gateway = step["results"]["gateway"]
    assert gateway["sent"] == RATE * DURATION == gateway["ok"]
    assert gateway["outcomes"] == {"approved": gateway["sent"]}


def test_target_bench_reads_cpu_and_commits_from_the_metrics_page(
    target: dict[str, Any],
) -> None:
    report = target["report"]
    (step,) = report["steps"]
    gateway = step["results"]["gateway"]
    assert gateway["server_cpu_s"] > 0
    # One ledger operation per authorization decided, in as many commits as it took.
    ledger = gateway["ledger_commits"]
    assert ledger["operations"] == gateway["sent"] == RATE * DURATION
    assert 1 <= ledger["commits"] <= ledger["operations"]
    assert ledger["mean_commit_ms"] > 0
    assert report["warmup"]["gateway"]["ledger_commits"]["operations"] == CARDHOLDERS
    # Every call counted by one of the bank's workers.
    assert len(gateway["worker_calls"]) == TARGET_WORKERS
    assert sum(gateway["worker_calls"]) == RATE * DURATION


def test_target_bench_reports_the_configured_workers(target: dict[str, Any]) -> None:
    setting = target["report"]["setting"]
    assert setting["bank"] == "target"
    assert setting["workers"] == TARGET_WORKERS


def test_target_approvals_are_the_holds_in_its_ledger(target: dict[str, Any]) -> None:
    # Counted after the first run: the step plus the warm-up.
    assert target["holds"] == RATE * DURATION + CARDHOLDERS
    # The bench held each run to them itself, reading the ledger --bank-config names.
    report = target["report"]
    for result in [report["warmup"]["gateway"], report["steps"][0]["results"]["gateway"]]:
        assert result["ledger_holds"]["holds_made"] == result["outcomes"]["approved"]
        assert result["bank_checked"] is True


def test_a_second_run_on_the_same_bank_registers_a_merchant_of_its_own(
    target: dict[str, Any],
) -> None:
    # The Merchant CA refuses an initial registration naming a merchant ID that holds
    # live certificates: a second run under the first one's ID would stop at registration.
    assert went_right(target["again"], target["report_again"])
    assert _holds(target["work"]) == 2 * (RATE * DURATION + CARDHOLDERS)
    ca_db = target["work"] / "bank" / "ca.db"
    with sqlite3.connect(f"file:{ca_db}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT DISTINCT subject FROM certificates WHERE certificate_type = ?", (MERCHANT,)
        ).fetchall()
    merchants = sorted(subject for (subject,) in rows)
    assert len(merchants) == 2, merchants
    assert all(m.startswith("bench-merchant-") for m in merchants), merchants


def test_every_population_names_a_merchant_of_its_own() -> None:
    def population() -> Population:
        return Population(
            profile=profile_named("ec"), brand_id="setpay", bin="411111", cardholders=1,
            expiry="203012", credit_limit=1000, currency=978, amount=100,
        )  # fmt: skip

    ids = {population().merchant_id for _ in range(8)}
    assert len(ids) == 8
    assert all(re.fullmatch(r"bench-merchant-[0-9a-f]{8}", i) for i in ids), ids


@pytest.mark.parametrize(
    ("listen", "dialed"),
    [
        ("0.0.0.0:7444", "127.0.0.1:7444"),
        ("[::]:7444", "127.0.0.1:7444"),
        ("127.0.0.1:7444", "127.0.0.1:7444"),
        ("ca.bank.example:7444", "ca.bank.example:7444"),
    ],
)
def test_a_wildcard_listen_is_dialed_on_the_loopback(listen: str, dialed: str) -> None:
    assert bench.dialable(listen) == dialed


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("soft:ephemeral", "software keystore"),
        ("soft:dir=keys;pin-source=file:pin", "software keystore"),
        (
            "pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=bank;pin-source=env:PIN",
            "pkcs11 (libsofthsm2.so)",
        ),
        ("pkcs11:token=bank;pin-source=env:PIN", "unrecognized key URI"),  # no module
        ("pkcs11:module=m.so;token=bank;pin-value=1234", "unrecognized key URI"),
        ("1234", "unrecognized key URI"),
    ],
)
def test_the_report_names_the_key_backend_never_its_secrets(uri: str, kind: str) -> None:
    assert spawn.keys_kind(uri) == kind
