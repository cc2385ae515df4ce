"""Every ``setpay`` process, and every worker it forks, writes no core file and is not
dumpable: a crash must not put the ledger keys, PANs or passphrases it holds on disk, and
other processes of its user must not read its memory. ``SETPAY_ALLOW_INSPECTION=1`` (the
bench's servers, the tests' banks) leaves it dumpable, ``SETPAY_ALLOW_CORE_DUMPS=1`` (for
debugging a crash) leaves both alone, each with a warning. Only setpay run as a program
does this: a test calling ``main(argv)`` keeps its own process as it was.

Each check of a core limit of 0 also checks the limit setpay was given was not 0 already:
a test process hardened before (by an in-process ``main`` call that hardened) would pass a
hard limit of 0 on to every process it starts, which a non-root user cannot raise."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.hardening import ALLOW_CORE_DUMPS, ALLOW_INSPECTION
from tests.cli.dump_probe import CALL, MODULE, SCRIPT, core_limit_line, given_limit, read_records
from tests.gateway.served import REPOSITORY, ServedBank, children_of, served, wait_for

# What /proc/PID/limits says of a process that may write no core file, whatever it does.
NO_CORE = "Max core file size 0 0 bytes"
NOT_DUMPABLE = 0
DUMPABLE = 1
# A short command that gets past parsing (so logging is set up) and fails at once.
HEALTH = ("health", "--target", "127.0.0.1:1", "--ca")
# Each command here ends within a second or two; a loaded 2-core machine gets far more.
COMMAND_SECONDS = 60.0


def _probe(
    directory: Path, *words: str, env: dict[str, str] | None = None, entry: str = SCRIPT
) -> str:
    """Run ``setpay WORDS`` under the probe, by ``entry``; its stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SETPAY_")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.cli.dump_probe", str(directory), entry, *words],
        env={**clean, **(env or {})}, cwd=REPOSITORY, capture_output=True, text=True,
        timeout=COMMAND_SECONDS, check=False,
    )  # fmt: skip
    return done.stderr


def _given(records: Path) -> str:
    """The core limit setpay was given, checked not to be 0 already."""
    given = given_limit(records)
    assert given != NO_CORE, "setpay was given a core limit of 0: a check of 0 proves nothing"
    return given


@pytest.mark.parametrize(
    ("entry", "words"),
    [(SCRIPT, ("--help",)), (SCRIPT, HEALTH), (MODULE, HEALTH)],
    ids=["console-script-help", "console-script-health", "python-m-health"],
)
def test_a_setpay_command_may_dump_no_core_and_is_not_dumpable(
    tmp_path: Path, entry: str, words: tuple[str, ...]
) -> None:
    records = tmp_path / "records"
    if words == HEALTH:
        words = (*words, str(tmp_path / "missing.pem"))
    err = _probe(records, *words, entry=entry)
    [(dumpable, limit)] = read_records(records).values()
    _given(records)
    assert limit == NO_CORE, err
    assert dumpable == NOT_DUMPABLE, err
    assert ALLOW_CORE_DUMPS not in err and ALLOW_INSPECTION not in err


def test_main_called_from_inside_a_program_leaves_its_process_as_it_was(tmp_path: Path) -> None:
    records = tmp_path / "records"
    err = _probe(records, *HEALTH, str(tmp_path / "missing.pem"), entry=CALL)
    [(dumpable, limit)] = read_records(records).values()
    assert (dumpable, limit) == (DUMPABLE, _given(records)), err


@pytest.fixture(params=[False, True], ids=["hardened", "inspectable"])
def bank(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServedBank]:
    yield from served(
        tmp_path, workers=2, metrics=False, inspectable=request.param,
        command=("tests.cli.dump_probe", str(tmp_path / "records"), SCRIPT),
    )  # fmt: skip


def test_the_workers_of_a_served_bank_inherit_both(
    tmp_path: Path, bank: ServedBank, request: pytest.FixtureRequest
) -> None:
    inspectable = request.node.callspec.params["bank"]
    supervisor = bank.process.pid
    records_of = tmp_path / "records"

    def recorded() -> bool:
        children = children_of(supervisor)
        return len(children) >= 2 and set(children) <= set(read_records(records_of))

    wait_for("a record from each worker", recorded)
    _given(records_of)
    children = children_of(supervisor)
    # Read from outside while they serve: the limit the kernel applies to each.
    for pid in (supervisor, *children):
        assert core_limit_line(pid) == NO_CORE, pid
    records = read_records(records_of)
    # From inside each: the supervisor after its forks, every child as it was forked.
    flag = DUMPABLE if inspectable else NOT_DUMPABLE
    for pid, (dumpable, limit) in records.items():
        assert (dumpable, limit) == (flag, NO_CORE), pid
    assert bank.stop() == 0
    assert ALLOW_CORE_DUMPS not in bank.log()
    # Once, by the supervisor: its workers, forked, do not set up logging again.
    assert bank.log().count(f"{ALLOW_INSPECTION}=1") == (1 if inspectable else 0)


def test_the_opt_out_leaves_both_and_says_so(tmp_path: Path) -> None:
    records = tmp_path / "records"
    err = _probe(records, *HEALTH, str(tmp_path / "missing.pem"), env={ALLOW_CORE_DUMPS: "1"})
    [(dumpable, limit)] = read_records(records).values()
    assert dumpable == DUMPABLE
    assert limit == _given(records)  # the limit it was given, untouched
    warnings = [line for line in err.splitlines() if ALLOW_CORE_DUMPS in line]
    assert len(warnings) == 1, err
    assert "WARNING" in warnings[0] and "may write core files" in warnings[0]


def test_an_opt_out_other_than_1_keeps_both_and_says_so(tmp_path: Path) -> None:
    records = tmp_path / "records"
    err = _probe(records, *HEALTH, str(tmp_path / "missing.pem"), env={ALLOW_CORE_DUMPS: "yes"})
    [(dumpable, limit)] = read_records(records).values()
    _given(records)
    assert (dumpable, limit) == (NOT_DUMPABLE, NO_CORE)
    assert f"{ALLOW_CORE_DUMPS} is set but not to 1: core dumps stay off" in err


def test_the_inspection_opt_in_keeps_no_core_leaves_it_dumpable_and_says_so(
    tmp_path: Path,
) -> None:
    records = tmp_path / "records"
    err = _probe(records, *HEALTH, str(tmp_path / "missing.pem"), env={ALLOW_INSPECTION: "1"})
    [(dumpable, limit)] = read_records(records).values()
    _given(records)
    assert (dumpable, limit) == (DUMPABLE, NO_CORE), err
    warnings = [line for line in err.splitlines() if ALLOW_INSPECTION in line]
    assert len(warnings) == 1, err
    assert "WARNING" in warnings[0] and "may be read by other processes" in warnings[0]


def test_an_inspection_opt_in_other_than_1_keeps_both_and_says_so(tmp_path: Path) -> None:
    records = tmp_path / "records"
    err = _probe(records, *HEALTH, str(tmp_path / "missing.pem"), env={ALLOW_INSPECTION: "yes"})
    [(dumpable, limit)] = read_records(records).values()
    _given(records)
    assert (dumpable, limit) == (NOT_DUMPABLE, NO_CORE), err
    assert f"{ALLOW_INSPECTION} is set but not to 1: the process stays non-dumpable" in err
