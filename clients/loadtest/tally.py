"""The tally of one run: every request accounted for, answers opened, latency percentiles.

Answers are opened after the clock stops, the way the merchant opens them (gateway
signature and chain, our RRPID, our name, our request), so an "approved" in the report is
a verified, signed approval. Every request sent ends in exactly one of three counts:

    ok        a verified AuthRes (approved, or declined with its code and reason)
    errors    a gRPC status other than DEADLINE_EXCEEDED, a signed SET Error (by code),
              or an answer that did not verify
    timeouts  DEADLINE_EXCEEDED: no answer within the per-call deadline

Those three counts add up to the requests recorded by construction. The bench's own
further checks (an open loop recorded every request it scheduled, each with its send
time; the calls the sender started are the requests recorded) guard the bench's code
against a lost sample, but they are kept by the same loop that records, so they cannot
catch much else. The independent check is the bank's own metrics page, when it is read
(``--metrics``, ``--metrics-url``): the calls its workers handled during the run must be
the requests sent, and the authorization decisions it answered
(``setpay_authorizations_total``, counted before each answer leaves) the decisions the
bench verified. Ledger operations are not that count: a decline takes two writes (the
decision, then its answer) and the hold sweeper commits too. A run with errors or
timeouts cannot be held to equality (a call refused before it reached a worker, or still
running when the page was read, is not in the bank's count), so it is held to bounds: at
least the verified answers, at most the requests sent; the page's approvals likewise, to
the verified approvals. The bank's ledger is the other independent count (``holds``): the
holds it made for the bench's merchant during the run must be the verified approvals, or
within the same bounds widened by the calls of earlier runs it may still have been running
(``carried``), and every hold of the run's amount. One rule (``_within``) bounds every
count.
``unaccounted`` lists what does not match. The page is read once the bank has no call in
flight (``settle``), so that a call the bench gave up on counts in its own run; a page
read while the bank was still busy after the wait's bound is not held to the bench's
counts either way: the tally says why, and what the page said, in ``accounting_doubts``.
A bank's run for which neither the page's counts nor the ledger could be read is not
checked against the bank at all, which ``accounting_doubts`` says too.

Latency percentiles are over every request, whatever its outcome (a timeout, or a call
given up on, counts with the time it waited): leaving failures out would flatter exactly
the runs that go wrong. They are given over the verified answers alone too, which is
what a caller that was answered saw.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from clients.loadtest.bank_page import Activity, LedgerCommits, WorkerCalls
from clients.loadtest.holds import Holds
from clients.loadtest.load import TIMEOUT_STATUS, OpenLoop, Recording, Sample
from clients.loadtest.speed import Speed
from setcore.authorization import AuthResult
from setcore.enum_names import code_name
from setcore.errors import PeerError, ProtocolError
from setpay.v1 import authorization_pb2

# A request whose answer never came back to the bench (a lost callback): counted as an
# error under this name so that the sum still closes.
NO_ANSWER = "NO_ANSWER"
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
APPROVED = "approved"
ECHOED = "echoed"
# The event loop's timers have millisecond resolution (``load``), so an open-loop send up
# to this late is the timer's grain; a later one is the bench falling behind its schedule.
LATE_SEND_MS = 1.0
# Below this many values the 99.9th percentile is the maximum itself (nearest rank).
P999_SAMPLES = 1000
# A bank's run with neither its page's counts nor its ledger read: nothing independent of
# the bench's own loop says its answers were the bank's decisions.
UNCHECKED = ("not checked against the bank: neither its metrics page (--metrics, "
             "--metrics-url) nor its ledger could be read")  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """What one answered request turned out to be."""

    outcome: str | None = None  # ok: "approved", "declined: CODE / REASON", "echoed"
    set_error: str | None = None  # a SET ErrorCode name, or "unverifiable: CODE"


Judge = Callable[[int, bytes], Verdict]
"""Opens the answer to request number ``index`` (its bytes) and says what it is."""


def echo_judge(_index: int, _response: bytes) -> Verdict:
    """The echo service's fixed answer: nothing to open."""
    return Verdict(outcome=ECHOED)


def auth_judge(
    open_response: Callable[[int, authorization_pb2.AuthorizeResponse], AuthResult],
) -> Judge:
    """A judge over ``open_response(index, response)``: setcore's verifying opener."""

    def judge(index: int, response: bytes) -> Verdict:
        try:
            message = authorization_pb2.AuthorizeResponse.FromString(response)
            result = open_response(index, message)
        except DecodeError:
            return Verdict(set_error="unverifiable: unparseable answer")
        except PeerError as exc:
            return Verdict(set_error=exc.code_name)
        except ProtocolError as exc:
            return Verdict(set_error=f"unverifiable: {exc.code_name}")
        if result.auth_code == authorization_pb2.AUTH_CODE_APPROVED:
            return Verdict(outcome=APPROVED)
        # Any code but APPROVED declines, one of a later release this build does not know too.
        reason = result.data.auth_res_payload.auth_header.response_data.resp_reason
        return Verdict(
            outcome=f"declined: {code_name(authorization_pb2.AuthCode, result.auth_code)}"
            f" / {code_name(authorization_pb2.RespReason, reason)}"
        )

    return judge


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in milliseconds."""

    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float
    count: int = 0  # the values they are taken over (0: not said)

    @property
    def p999_is_max(self) -> bool:
        """Too few values for a 99.9th percentile other than the maximum."""
        return 0 < self.count < P999_SAMPLES

    def as_dict(self) -> dict[str, float | int | bool]:
        """The JSON form (keys as people write them: p99.9)."""
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "p99.9": self.p999,
                "max": self.max, "mean": self.mean, "count": self.count,
                "p99.9_is_max": self.p999_is_max}  # fmt: skip


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of sorted values (nearest rank: a value that was observed)."""
    if not ordered:
        raise ValueError("no values")
    # Rounded first: 99.9 / 100 * 1000 is a hair above 999 in binary floating point.
    rank = max(1, math.ceil(round(q * len(ordered) / 100.0, 9)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_of(seconds: Sequence[float]) -> Latency | None:
    """Percentiles of latencies given in seconds (None for no values)."""
    if not seconds:
        return None
    ordered = sorted(s * 1000.0 for s in seconds)
    p50, p90, p99, p999 = (percentile(ordered, q) for _, q in PERCENTILES)
    return Latency(p50, p90, p99, p999, ordered[-1], sum(ordered) / len(ordered), len(ordered))


@dataclass
class Tally:
    """One run, counted."""

    target: str
    shape: str
    offered_rate: float | None
    duration: float
    sent: int
    ok: int
    errors: int
    timeouts: int
    throughput: float  # verified answers per second over its measured interval (``load``)
    latency: Latency | None
    client_cpu_seconds: float
    server_cpu_seconds: float | None
    max_in_flight: int
    send_lag_max_ms: float
    exhausted: bool
    outcomes: dict[str, int] = field(default_factory=dict)
    grpc_errors: dict[str, int] = field(default_factory=dict)
    set_errors: dict[str, int] = field(default_factory=dict)
    ledger: LedgerCommits | None = None  # the bank's commits during the run, if it says
    workers: WorkerCalls | None = None  # its workers' calls during the run, if it says
    # Each child process's part of the server's CPU in the run (a server the bench started).
    process_cpu_shares: tuple[float, ...] | None = None
    # The run's connections each worker accepted, and the re-dials it took to reach every
    # worker (a server the bench started).
    connections: tuple[int, ...] | None = None
    redials: int = 0
    # The machine's speed during the run (``speed``), if the bench sampled it.
    speed: Speed | None = None
    # What the independent counts say that the tally's does not (the module docstring).
    unaccounted: tuple[str, ...] = ()
    # The bank's counts that could not be held to the tally's: its page was read while it
    # was still busy (the module docstring).
    accounting_doubts: tuple[str, ...] = ()
    # Latency over the verified answers alone (``latency`` is over every request).
    latency_ok: Latency | None = None
    # Open loop: the sends' lateness against their schedule, and the sends later than
    # LATE_SEND_MS (zero for a closed loop, which sends when it is ready).
    send_lag_p50_ms: float = 0.0
    send_lag_p99_ms: float = 0.0
    late_sends: int = 0
    # What the bank's ledger recorded during the run (``holds``), if the bench read it.
    holds: Holds | None = None
    # Whether anything of the bank's own (its page's counts, its ledger) was read and held
    # to the tally's; a reference service has no bank, and nothing to check.
    bank_checked: bool = False

    @property
    def accounted(self) -> bool:
        """Every request sent is ok, an error or a timeout, and the counts kept apart from
        the tally (the bench's own, the bank's) agree with it."""
        return self.sent == self.ok + self.errors + self.timeouts and not self.unaccounted

    @property
    def approved(self) -> int:
        """Verified approvals."""
        return self.outcomes.get(APPROVED, 0)

    @property
    def server_cpu_per_request_us(self) -> float | None:
        """Server CPU microseconds per request sent (None when not observed); kept for the
        JSON's ``server_cpu_us_per_request``: ``server_cpu_per_answer_us`` is the figure."""
        if self.server_cpu_seconds is None or not self.sent:
            return None
        return self.server_cpu_seconds / self.sent * 1e6

    @property
    def server_cpu_per_answer_us(self) -> float | None:
        """Server CPU microseconds per verified answer (None when not observed or none):
        a server that sheds calls spends little on them, and per request sent it would
        look cheaper the more it refuses."""
        if self.server_cpu_seconds is None or not self.ok:
            return None
        return self.server_cpu_seconds / self.ok * 1e6

    @property
    def client_cpu_per_request_us(self) -> float | None:
        """The bench's own CPU microseconds per request sent."""
        return self.client_cpu_seconds / self.sent * 1e6 if self.sent else None

    @property
    def clean(self) -> bool:
        """Every request accounted for, no errors, no timeouts, and the closed loop did not
        run dry."""
        return self.accounted and self.errors == 0 and self.timeouts == 0 and not self.exhausted


def tally(
    target: str,
    recording: Recording,
    judge: Judge,
    during: Activity | None = None,
    *,
    process_cpu_shares: tuple[float, ...] | None = None,
    speed: Speed | None = None,
    held: Holds | None = None,
    carried: int = 0,
    bank: bool = False,
) -> Tally:
    """Count ``recording``, opening every answer with ``judge``; ``during``: what the
    bank's metrics page said about the run (its commits, its workers' calls), if read;
    ``process_cpu_shares``: each child process's part of the server's CPU, if known;
    ``speed``: the machine's speed readings during the run, if sampled; ``held``: what
    the bank's ledger recorded during it, if read, with ``carried`` calls of earlier runs
    that may have made their holds since; ``bank``: the target is a bank, whose run is in
    doubt when nothing of its own could be read."""
    outcomes: Counter[str] = Counter()
    grpc_errors: Counter[str] = Counter()
    set_errors: Counter[str] = Counter()
    ok = errors = timeouts = 0
    answered: list[float] = []  # the verified answers' latencies
    measured = recording.measured
    until = recording.started + measured
    in_time = 0  # the verified answers that arrived within the measured interval
    for sample in recording.samples:
        kind = _count(sample, judge, outcomes, grpc_errors, set_errors)
        ok += kind == "ok"
        errors += kind == "error"
        timeouts += kind == "timeout"
        if kind == "ok" and not math.isnan(sample.took):
            answered.append(sample.took)
            in_time += sample.due + sample.took <= until
    shape = recording.shape
    waited = [s.took for s in recording.samples if not math.isnan(s.took)]
    sent = len(recording.samples)
    lags = _send_lags(recording)
    approved = outcomes.get(APPROVED, 0)
    # Only a bank's answers are decisions to hold the page's approvals to (not an echo's).
    banked = _banked(approved if bank else None, ok, sent, errors + timeouts, during)
    # Doubt only a check there was: a page without the counts said nothing to hold.
    checked = during is not None and (during.workers, during.decisions) != (None, None)
    unsettled = during.unsettled if during is not None and checked else ()
    in_ledger = () if held is None else _held(held, approved, errors + timeouts, carried)
    doubts = _doubts(unsettled, banked) if unsettled else ()
    if bank and not checked and held is None:
        doubts += (UNCHECKED,)
    return Tally(
        target=target, shape=shape.label,
        offered_rate=getattr(shape, "rate", None),
        # A warm-up, or a closed loop out of requests, says how long it ran (``load``).
        duration=measured,
        sent=sent, ok=ok, errors=errors, timeouts=timeouts,
        throughput=in_time / measured if measured > 0 else 0.0,
        latency=latency_of(waited), client_cpu_seconds=recording.client_cpu,
        server_cpu_seconds=recording.server_cpu, max_in_flight=recording.max_in_flight,
        send_lag_max_ms=recording.send_lag_max * 1000.0, exhausted=recording.exhausted,
        outcomes=dict(outcomes), grpc_errors=dict(grpc_errors), set_errors=dict(set_errors),
        ledger=during.ledger if during else None, workers=during.workers if during else None,
        process_cpu_shares=process_cpu_shares, connections=recording.connections,
        redials=recording.redials, speed=speed,
        unaccounted=_unaccounted(recording) + (() if unsettled else banked) + in_ledger,
        accounting_doubts=doubts,
        latency_ok=latency_of(answered),
        send_lag_p50_ms=percentile(lags, 50.0) if lags else 0.0,
        send_lag_p99_ms=percentile(lags, 99.0) if lags else 0.0,
        late_sends=sum(lag > LATE_SEND_MS for lag in lags),
        holds=held, bank_checked=checked or held is not None,
    )  # fmt: skip


def _send_lags(recording: Recording) -> list[float]:
    """An open loop's sends' lateness, milliseconds, sorted (none for a closed loop)."""
    if not isinstance(recording.shape, OpenLoop):
        return []
    return sorted((s.sent - s.due) * 1000.0 for s in recording.samples if not math.isnan(s.sent))


def _unaccounted(recording: Recording) -> tuple[str, ...]:
    """Where the bench's own counts kept apart from the tally disagree with it."""
    found = []
    samples = recording.samples
    sent = len(samples)
    shape = recording.shape
    if isinstance(shape, OpenLoop) and sent != shape.requests:
        found.append(f"{shape.requests:,} requests scheduled, {sent:,} recorded")
    unsent = sum(math.isnan(s.sent) for s in samples)
    if unsent:
        found.append(f"{unsent:,} requests recorded without a send time")
    if recording.calls_started is not None and recording.calls_started != sent:
        found.append(f"{recording.calls_started:,} calls started, {sent:,} recorded")
    return tuple(found)


def _banked(
    approved: int | None, ok: int, sent: int, failed: int, during: Activity | None
) -> tuple[str, ...]:
    """Where the bank's own counts disagree with a run's ``ok`` answers of ``sent``, of
    which ``approved`` approvals."""
    found = []
    if during is not None and during.workers is not None:
        handled = during.workers.total
        if not _within(handled, ok, sent):
            found.append(f"the bank's workers handled {handled:,} calls, the bench sent {sent:,}")
    if during is not None and during.decisions is not None:
        decided = during.decisions
        if not _within(decided, ok, sent):
            found.append(f"the bank answered {decided:,} authorization decisions, the bench "
                         f"verified {ok:,}")  # fmt: skip
    if approved is not None and during is not None and during.approvals is not None:
        approvals = during.approvals
        if not _within(approvals, approved, approved + failed):
            found.append(f"the bank answered {approvals:,} approvals, the bench verified "
                         f"{approved:,}")  # fmt: skip
    return tuple(found)


def _doubts(unsettled: tuple[str, ...], banked: tuple[str, ...]) -> tuple[str, ...]:
    """Why the bank's counts were not held to the tally's, and what they said."""
    said = "; ".join(banked) or (
        "they agree, but may count calls of the run before or miss some of this one"
    )
    return (f"the bank was busy when its page was read ({'; '.join(unsettled)}), so its "
            f"counts were not held to the bench's: {said}",)  # fmt: skip


def _held(holds: Holds, approved: int, failed: int, carried: int) -> tuple[str, ...]:
    """Where the ledger's holds for the bench's merchant disagree with a run's ``approved``
    verified approvals, ``failed`` calls unanswered, after ``carried`` calls of earlier
    runs that may have made their holds since (module docstring)."""
    found = []
    most = approved + failed + carried
    if not _within(holds.made, approved, most):
        expected = f"{approved:,}" if most == approved else f"{approved:,} to {most:,}"
        found.append(f"the bank's ledger made {holds.made:,} holds for the bench's merchant, "
                     f"the bench verified {approved:,} approvals: expected {expected}")  # fmt: skip
    if holds.of_another_amount:
        found.append(f"the bank's ledger's holds for the bench's merchant came to "
                     f"{holds.total:+,}, not {holds.made:,} of {holds.amount:,}")  # fmt: skip
    return tuple(found)


def _within(banked: int, verified: int, most: int) -> bool:
    """A count of the bank's matches the bench's ``verified`` one: between it and ``most``,
    which is ``verified`` itself when no call failed (equal then), and adds the calls
    that may or may not have reached the bank when some did (module docstring)."""
    return verified <= banked <= most


def _count(
    sample: Sample,
    judge: Judge,
    outcomes: Counter[str],
    grpc_errors: Counter[str],
    set_errors: Counter[str],
) -> str:
    if sample.status == TIMEOUT_STATUS:
        return "timeout"
    if sample.status != "OK" or sample.response is None:
        grpc_errors[sample.status or NO_ANSWER] += 1
        return "error"
    verdict = judge(sample.index, sample.response)
    if verdict.outcome is None:
        set_errors[verdict.set_error or "unknown"] += 1
        return "error"
    outcomes[verdict.outcome] += 1
    return "ok"
