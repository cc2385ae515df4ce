"""What a bank's metrics page says about a run (its ledger's commits, its workers' calls),
read over real HTTP."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from clients.loadtest import bank_page, cpu, metrics_page
from clients.loadtest.bank_page import CommitCounts, LedgerCommits, Reading, WorkerCalls
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import to_json, to_text
from clients.loadtest.tally import Tally

# What a bank with two workers serves (the supervisor merges the workers' samples; the
# label-less histograms then appear once, a labelled counter once per label set).
PAGE = """\
# HELP setpay_ledger_commit_operations Operations carried by one ledger commit
# TYPE setpay_ledger_commit_operations histogram
setpay_ledger_commit_operations_bucket{le="1.0"} 3.0
setpay_ledger_commit_operations_bucket{le="+Inf"} 12.0
setpay_ledger_commit_operations_count 12.0
setpay_ledger_commit_operations_sum 40.0
# TYPE setpay_ledger_commit_duration_seconds histogram
setpay_ledger_commit_duration_seconds_count 12.0
setpay_ledger_commit_duration_seconds_sum 0.06
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total{pid="101"} 1.5
process_cpu_seconds_total{pid="102"} 2.25
# TYPE setpay_worker_rpcs_total counter
setpay_worker_rpcs_total{worker="0"} 30.0
setpay_worker_rpcs_total{worker="1"} 14.0
"""


class _Page(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def page() -> Iterator[tuple[str, type[_Page]]]:
    """A metrics page on a loopback port; set ``handler.body`` to change what it serves."""
    handler = type("Page", (_Page,), {"body": PAGE.encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_is_read_summed_per_name(page: tuple[str, type[_Page]]) -> None:
    url, _ = page
    assert bank_page.probe_of(url)() == Reading(
        CommitCounts(12.0, 40.0, 0.06, seen=True), {"0": 30.0, "1": 14.0}
    )
    assert cpu.scrape(url)() == pytest.approx(3.75)  # both workers' CPU


def test_a_setpay_bank_s_own_cpu_counter_is_preferred(page: tuple[str, type[_Page]]) -> None:
    url, handler = page
    # The bank's whole-tree counter, beside the standard one of the process serving it.
    handler.body = ("setpay_bank_cpu_seconds_total 9.5\n" + PAGE).encode()
    assert cpu.scrape(url)() == 9.5


def test_an_unreadable_page_gives_no_reading() -> None:
    url = "http://127.0.0.1:1/metrics"  # nothing listens on port 1
    assert bank_page.probe_of(url)() is None
    assert cpu.scrape(url)() is None


def test_a_url_that_is_not_http_is_refused_before_any_run() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        bank_page.probe_of("file:///etc/passwd")
    with pytest.raises(ValueError, match="http:// or https://"):
        cpu.scrape("ftp://bank/metrics")


def test_comments_and_other_names_are_not_counted() -> None:
    text = "# setpay_ledger_commit_operations_sum 99\nsetpay_ledger_commit_operations_sums 7\n"
    assert metrics_page.sums(text, frozenset({"setpay_ledger_commit_operations_sum"})) == {}
    assert bank_page.read(text) == Reading()


def test_the_commits_of_a_run_are_the_difference(page: tuple[str, type[_Page]]) -> None:
    url, handler = page
    probe = bank_page.probe_of(url)
    before = probe()
    handler.body = PAGE.replace("_count 12.0", "_count 17.0").replace("_sum 40.0", "_sum 60.0")
    handler.body = handler.body.replace("seconds_sum 0.06", "seconds_sum 0.085").encode()
    run = bank_page.between(before, probe(), workers=2).ledger
    assert run == LedgerCommits(commits=5, operations=20, seconds=pytest.approx(0.025))
    assert run is not None
    assert run.operations_per_commit == 4.0
    assert run.mean_commit_ms == pytest.approx(5.0)


def test_a_ledger_that_had_not_committed_before_the_run_starts_from_zero() -> None:
    after = bank_page.read(PAGE)
    assert bank_page.between(Reading(), after, workers=2).ledger == LedgerCommits(12, 40, 0.06)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, CommitCounts(1.0, 1.0, 0.01, seen=True)),  # the page failed before the run
        (CommitCounts(1.0, 1.0, 0.01, seen=True), None),  # ... or after it
        (CommitCounts(), CommitCounts()),  # a page without the ledger's metrics
        # The counters went back: the bank restarted during the run.
        (CommitCounts(9.0, 30.0, 0.1, seen=True), CommitCounts(2.0, 5.0, 0.02, seen=True)),
    ],
)
def test_no_figures_when_the_readings_cannot_be_compared(
    before: CommitCounts | None, after: CommitCounts | None
) -> None:
    during = bank_page.between(
        None if before is None else Reading(before), None if after is None else Reading(after), 2
    )
    assert during.ledger is None


def test_the_calls_of_each_worker_during_a_run(page: tuple[str, type[_Page]]) -> None:
    url, handler = page
    probe = bank_page.probe_of(url)
    before = probe()
    handler.body = PAGE.replace('"0"} 30.0', '"0"} 530.0').replace('"1"} 14.0', '"1"} 1514.0')
    handler.body = handler.body.encode()
    workers = bank_page.between(before, probe(), workers=2).workers
    assert workers == WorkerCalls((500, 1500), expected=2)
    assert workers.shares == (0.25, 0.75)
    assert workers.idle == ()


def test_a_worker_the_page_never_named_handled_no_call() -> None:
    # Worker 1 had no connection since the bank started, so the page has no sample of it.
    before = Reading(worker_calls={"0": 10.0})
    after = Reading(worker_calls={"0": 710.0})
    workers = bank_page.between(before, after, workers=2).workers
    assert workers == WorkerCalls((700, 0), expected=2)
    assert workers.idle == (1,)


def test_workers_the_bench_was_not_told_of_are_counted_and_named() -> None:
    # A bank asked for one worker that runs two: the page names both.
    after = Reading(worker_calls={"0": 400.0, "1": 380.0})
    workers = bank_page.between(Reading(), after, workers=1).workers
    assert workers == WorkerCalls((400, 380), expected=1)
    text = to_text(_result(None, workers))
    assert "calls per worker 400 / 380 (51% / 49%); the bank's page names 2 workers, not" in text
    assert "not the 1 this run was told of" in text


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({}, {}),  # a page without worker counters (another server)
        ({"0": 1.0}, {"0": 2.0, "other": 1.0}),  # a worker label that is no index
        ({"0": 9.0, "1": 3.0}, {"0": 10.0, "1": 1.0}),  # a counter went back
    ],
)
def test_no_worker_figures_when_the_page_cannot_say(
    before: dict[str, float], after: dict[str, float]
) -> None:
    during = bank_page.between(Reading(worker_calls=before), Reading(worker_calls=after), 2)
    assert during.workers is None


def test_a_run_without_commits_has_no_ratios() -> None:
    idle = LedgerCommits(commits=0, operations=0, seconds=0.0)
    assert idle.operations_per_commit is None and idle.mean_commit_ms is None


def _result(ledger: LedgerCommits | None, workers: WorkerCalls | None = None) -> BenchResult:
    tally = Tally(
        target="gateway", shape="open loop 700/s", offered_rate=700.0, duration=10.0,
        sent=7000, ok=7000, errors=0, timeouts=0, throughput=700.0, latency=None,
        client_cpu_seconds=2.5, server_cpu_seconds=12.0, max_in_flight=40,
        send_lag_max_ms=0.5, exhausted=False, outcomes={"approved": 7000}, ledger=ledger,
        workers=workers,
    )  # fmt: skip
    step = StepResult(OpenLoop(rate=700.0, duration=10.0), {Service.GATEWAY: tally})
    return BenchResult(setting={}, plan=Plan(duration=10.0, rates=(700.0,)), steps=[step])


def test_the_report_shows_the_ledger_commits_of_a_run() -> None:
    result = _result(LedgerCommits(commits=3543, operations=7000, seconds=12.72))
    line = "gateway ledger: 3,543 commits carrying 7,000 operations (1.98 per commit), 3.59 ms"
    assert f"{line} per commit" in to_text(result)
    gateway = to_json(result)["steps"][0]["results"]["gateway"]
    assert gateway["ledger_commits"] == {
        "commits": 3543, "operations": 7000, "operations_per_commit": 1.976,
        "mean_commit_ms": 3.59,
    }  # fmt: skip


def test_a_run_without_page_figures_says_nothing_of_them() -> None:
    result = _result(None)
    text = to_text(result)
    assert "ledger:" not in text and "workers:" not in text
    gateway = to_json(result)["steps"][0]["results"]["gateway"]
    assert gateway["ledger_commits"] is None and gateway["worker_calls"] is None


def test_the_report_shows_each_worker_s_calls() -> None:
    result = _result(None, WorkerCalls((3600, 3400)))
    text = to_text(result)
    assert "gateway workers: calls per worker 3,600 / 3,400 (51% / 49%)\n" in text + "\n"
    assert "answered none" not in text
    assert to_json(result)["steps"][0]["results"]["gateway"]["worker_calls"] == [3600, 3400]


def test_the_report_flags_a_worker_that_answered_nothing() -> None:
    text = to_text(_result(None, WorkerCalls((7000, 0))))
    assert "calls per worker 7,000 / 0 (100% / 0%); worker 1 answered none: none of the 8" in text
    assert "raise --channels" in text


def test_a_worker_is_not_flagged_when_there_were_fewer_calls_than_channels() -> None:
    # Three calls on 8 channels: a worker may hold connections that carried none.
    text = to_text(_result(None, WorkerCalls((3, 0))))
    assert "calls per worker 3 / 0 (100% / 0%)" in text
    assert "answered none" not in text


def test_a_page_that_counted_no_call_gives_no_shares() -> None:
    text = to_text(_result(None, WorkerCalls((0, 0), expected=2)))
    assert "gateway workers: the bank's page names 2 workers but counted no call" in text
    assert "0%" not in text and "answered none" not in text


def _with_connections(connections: tuple[int, ...], redials: int) -> BenchResult:
    result = _result(None)
    tallies = result.steps[0].tallies
    tallies[Service.GATEWAY] = replace(
        tallies[Service.GATEWAY], connections=connections, redials=redials
    )
    return result


def test_the_report_shows_each_worker_s_connections() -> None:
    result = _with_connections((5, 3), redials=1)
    text = to_text(result)
    assert (
        "gateway connections per worker: 5 / 3 (dialled again once: a worker had none of the"
        " connections)\n" in text + "\n"
    )
    gateway = to_json(result)["steps"][0]["results"]["gateway"]
    assert gateway["connections_per_worker"] == [5, 3] and gateway["redials"] == 1


def test_the_report_says_when_a_worker_had_no_connection() -> None:
    text = to_text(_with_connections((8, 0), redials=3))
    assert "connections per worker: 8 / 0 (dialled again 3 times" in text
    assert "; worker 1 had no connection, so this run measured the others alone" in text
    assert "connections per worker" not in to_text(_result(None))
