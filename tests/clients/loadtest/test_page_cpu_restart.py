"""A bank's CPU read from its metrics page (``cpu.PageCpu``, a --target bank's server CPU)
when the counter goes back: the bank restarted between two readings.

The run's server CPU is the difference of the readings around it (``load._run``); a
counter that began again at 0 gave a negative figure, clean, where a bank the bench
started shows its CPU unknown and the bench says DOUBT (``cpu.ServerProcesses``).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from clients.loadtest import cpu

BANK_COUNTER = "setpay_bank_cpu_seconds_total"
PROCESS_COUNTER = "process_cpu_seconds_total"


class _Page(http.server.BaseHTTPRequestHandler):
    pages: list[str] = []  # served in turn, one per request (the last one again)

    def do_GET(self) -> None:
        body = (self.pages.pop(0) if len(self.pages) > 1 else self.pages[0]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def page() -> Iterator[tuple[str, type[_Page]]]:
    """A metrics page on a loopback port; ``handler.pages`` are served in turn."""
    handler = type("Page", (_Page,), {"pages": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", handler
    finally:
        server.shutdown()
        server.server_close()


def _counter(value: float, name: str = BANK_COUNTER) -> str:
    return f"# TYPE {name} counter\n{name} {value}\n"


def test_a_counter_that_goes_back_reads_unknown_and_counts_a_change(
    page: tuple[str, type[_Page]],
) -> None:
    url, handler = page
    # Before a run, after it (the bank restarted meanwhile), then around the next run.
    handler.pages = [_counter(v) for v in (812.4, 3.1, 4.0, 9.5)]
    probe = cpu.PageCpu(url)
    assert probe.server_cpu() == 812.4
    assert probe.server_cpu() is None  # the run it ends: unknown, not -809.3
    assert probe.changes == 1
    # The next run's readings start from the restarted bank's counter.
    first, second = probe.server_cpu(), probe.server_cpu()
    assert (first, second) == (4.0, 9.5)
    assert probe.changes == 1


def test_a_counter_that_grows_or_stays_is_no_change(page: tuple[str, type[_Page]]) -> None:
    url, handler = page
    handler.pages = [_counter(v) for v in (1.0, 1.0, 2.5, 7.25)]
    probe = cpu.PageCpu(url)
    assert [probe.server_cpu() for _ in range(4)] == [1.0, 1.0, 2.5, 7.25]
    assert probe.changes == 0


def test_a_page_that_reads_another_counter_than_before_is_a_change(
    page: tuple[str, type[_Page]],
) -> None:
    url, handler = page
    # A bank's whole-tree counter, then only the serving process's (another server).
    handler.pages = [_counter(5.0), _counter(9.0, PROCESS_COUNTER), _counter(9.5, PROCESS_COUNTER)]
    probe = cpu.PageCpu(url)
    assert [probe.server_cpu() for _ in range(3)] == [5.0, None, 9.5]
    assert probe.changes == 1


def test_an_unreadable_page_between_readings_changes_nothing(
    page: tuple[str, type[_Page]],
) -> None:
    url, handler = page
    handler.pages = [_counter(2.0), "# nothing of the bank's CPU\n", _counter(3.0)]
    probe = cpu.PageCpu(url)
    assert [probe.server_cpu() for _ in range(3)] == [2.0, None, 3.0]
    assert probe.changes == 0


def test_the_scrape_probe_reads_unknown_after_a_restart(page: tuple[str, type[_Page]]) -> None:
    url, handler = page
    handler.pages = [_counter(812.4), _counter(3.1)]
    probe = cpu.scrape(url)  # as the bench makes it for a --target bank
    before, after = probe(), probe()
    assert before == 812.4 and after is None  # the run's server CPU: unknown, never negative


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        cpu.PageCpu("file:///metrics")
