"""Load shedding: which calls a server admits, and the answer to the others.

Shared by the bank's servers (``gateway.admission``) and the merchant's
(``clients.merchant.servicer``): server code both may import, so it lives here, and each
counts its refusals in its own metrics (``Admission``'s ``count``). Nothing here serves.

Load shedding (a limit of calls in flight per server). gRPC's own
``maximum_concurrent_rpcs`` refuses a call in its poll thread where no code of ours runs, so
the calls it shed never reached the metrics. The server admits calls itself instead: its
pool counts the calls handed to it and not yet finished (queued or running: "in flight"),
and an interceptor, which gRPC calls for every call before handing it to the pool, admits
a call while fewer than the limit are in flight. Any other call is given a handler that,
on a thread of its own, counts it (the server's ``count``) and answers RESOURCE_EXHAUSTED
with a ``google.rpc.RetryInfo`` (``SHED_RETRY_SECONDS``) without reading the request, so a
refusal never waits behind the real work queued in the pool. Health checks have a small
reserve above the limit (``HEALTH_RESERVE``) but no thread of their own: a busy worker
still answers SERVING, after the calls queued ahead; a worker whose threads are all stuck
answers late, and a balancer rightly reads it as down. A server reflection stream runs on
a lane of threads of its own (``InFlightPool.streams``, ``STREAM_THREADS``): a client may
keep one open and idle for as long as it likes, each holding its thread, and on the pool
a handful of them (its threads, eight by default, and no client certificate needed on
the CA's port) held every thread there and left every call and health check waiting
behind them. The lane's threads are its limit: a stream past them is shed like a call
past the limit, and so is one that comes while the calls are at theirs, but a stream
held takes no place among the calls (it holds none of their threads, which was why it
was counted with them), so two held open and idle leave the calls their whole limit. A
stop ends the streams rather than wait for them or count them as cut
(``gateway.server``; the merchant serves no reflection).

The backstop. That one thread answers one refusal at a time, each some tens of
microseconds of Python competing for the GIL with the admitted work, so a flood (on the
CA's port no client certificate is needed to send one) could queue refusals faster than
they are answered, each later than the last. gRPC's own limit therefore stays on, above
ours: ``max_concurrent_rpcs + HEALTH_RESERVE + SHED_BACKLOG``. gRPC counts a call as
active from when it is handed to a pool, the server's or the refusals', until it is
answered (grpcio's ``_server.py``, not documented: the bank's test_server_admission pins
it), so at
most ``HEALTH_RESERVE + SHED_BACKLOG`` refusals ever wait. A call past
the backstop gets gRPC's own refusal in its poll thread, which holds the poll loop back
as a flood should: RESOURCE_EXHAUSTED with the same details, but no RetryInfo, and not
counted (gRPC runs the interceptor for it too, but only the
refusal handler counts). Health checks are refused there too: a worker that far behind
with its refusals is overloaded, and a balancer may as well read it so. When the server
stops, the threads of its pool and of the refusals end with it (``release_pools``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from datetime import timedelta
from typing import ParamSpec, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

# In-flight calls above max_concurrent_rpcs that only health checks may take. A load
# balancer keeps about one check in flight per backend from each of its few nodes; refusing
# one reads as "down" and moves this worker's share onto the others, which are as loaded.
# 16 covers a handful of balancers and still bounds a flood of health calls, shed past it.
HEALTH_RESERVE = 16
# Threads of the lane long-lived streams run on (``InFlightPool.streams``: server
# reflection's), and the streams it runs at once: each holds its thread for as long as its
# client keeps it open, idle or not, so a stream past them is shed rather than queued for a
# thread (it would count against gRPC's backstop while it waited). Reflection is an
# operator's tool (grpcurl opens a stream per command and closes it at once): two leave
# room for a second operator, and a client that holds both open takes nothing from the
# calls (neither their threads nor their limit: ``InFlightPool.in_flight``).
STREAM_THREADS = 2
# Threads that answer shed calls. A refusal is some tens of microseconds of Python, so one
# thread answers thousands a second; more would only take the GIL from the admitted work.
SHED_THREADS = 1
# Shed calls that may wait for that thread beyond the health reserve, before gRPC's own
# limit refuses new calls in its poll thread (the backstop, module docstring). A refusal
# costs its thread 25-30 us of CPU (measured on the 2-core development machine, RetryInfo
# included): 32 are about a millisecond, and even if every one waited out a whole GIL
# switch interval (5 ms) behind the admitted work, the last of HEALTH_RESERVE +
# SHED_BACKLOG would be answered within a quarter of a second. Room for a burst to get the
# counted refusal and its retry delay; a flood past it gets gRPC's.
SHED_BACKLOG = 32
# The retry delay a refusal asks for (google.rpc.RetryInfo). A worker at its limit answers
# hundreds of calls a second, so in 100 ms it frees tens of places; a longer delay would
# leave callers idle that it could soon take again. The bank's own clients wait up to as
# long (a random 0-100 ms) before their first retry.
SHED_RETRY_SECONDS = 0.1
# The details of gRPC's own refusal past its ``maximum_concurrent_rpcs``, word for word
# (grpcio's ``grpc/_server.py``, where it refuses the call in its poll thread before any
# handler runs): our backstop answers with them, without RetryInfo. Not a documented
# string: the clients' test_transport_concurrency pins it against a real server, so a
# grpcio that words it otherwise fails that test rather than stop the clients' retries
# (``clients.transport`` reads it as "refused unread") silently.
GRPC_CONCURRENCY_REFUSAL = "Concurrent RPC limit exceeded!"
# Our own refusal's details: gRPC's words, so that logs and searches written for its
# refusal match ours too, and a client that does not read the RetryInfo still sees the
# same refusal whichever of the two shed it.
SHED_DETAILS = GRPC_CONCURRENCY_REFUSAL
_HEALTH_PATH = f"/{health_pb2.DESCRIPTOR.services_by_name['Health'].full_name}/"

_P = ParamSpec("_P")
_T = TypeVar("_T")
#: Counts one shed call: (service, method), the service's full name.
ShedCounter = Callable[[str, str], None]


class InFlightPool(futures.ThreadPoolExecutor):
    """The server's thread pool; counts the calls handed to it and not yet finished.

    Long-lived streams that are no call a stop should wait for (server reflection's) are
    handed to ``streams``, a lane of ``STREAM_THREADS`` threads of its own, and counted
    apart (``streams_in_flight``): they never hold one of the pool's threads nor a place
    among the calls, nor are they calls a stop cuts (the module docstring says why).
    Shutting the pool down shuts the lane down too."""

    def __init__(self, threads: int) -> None:
        super().__init__(max_workers=threads, thread_name_prefix="rpc")
        # One item per call in flight. A deque's append and pop are thread-safe (its
        # documentation says so), so this path of every call takes no lock: measured a
        # few tenths of a microsecond cheaper per call than a lock around an int.
        self._calls: deque[None] = deque()
        self.streams = _StreamLane()

    @property
    def in_flight(self) -> int:
        """Calls handed to the pool and not yet finished (queued or running): what the
        limit of calls in flight counts. The lane's streams are not among them."""
        return len(self._calls)

    @property
    def calls_in_flight(self) -> int:
        """``in_flight``, by the name a stop's count of calls cut reads it
        (``gateway.server``): the streams handed over through ``streams`` are no calls
        a stop cuts."""
        return len(self._calls)

    @property
    def streams_in_flight(self) -> int:
        """The streams handed over through ``streams`` and not yet finished."""
        return len(self.streams.counted)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ThreadPoolExecutor's, for the pool and its streams' lane."""
        super().shutdown(wait, cancel_futures=cancel_futures)
        self.streams.shutdown(wait, cancel_futures=cancel_futures)

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> futures.Future[_T]:
        """Queue ``fn`` (a call gRPC admitted) and count it until it is done."""
        return _counted_submit(self._calls, super().submit, fn, *args, **kwargs)


def _counted_submit(
    count: deque[None],
    submit: Callable[..., futures.Future[_T]],
    fn: Callable[_P, _T],
    /,
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> futures.Future[_T]:
    """``submit(fn, ...)``, counted in ``count`` until its future is done."""
    count.append(None)
    try:
        future = submit(fn, *args, **kwargs)
    except BaseException:
        count.pop()
        raise
    # Runs once however the call ends, cancelled unrun included: a slot never leaks.
    future.add_done_callback(lambda _: count.pop())
    return future


class _StreamLane(futures.ThreadPoolExecutor):
    """``InFlightPool.streams``: ``STREAM_THREADS`` threads of its own, each stream handed
    to it counted (``counted``, the pool's ``streams_in_flight``) until it is done.

    A ThreadPoolExecutor because grpcio takes nothing else as a behaviour's
    ``experimental_thread_pool`` (``Refusal`` says more); its threads start with its first
    stream, so a server without reflection (the merchant's) never starts one."""

    def __init__(self) -> None:
        super().__init__(max_workers=STREAM_THREADS, thread_name_prefix="stream")
        # One item per stream in flight, as the pool's calls are counted.
        self.counted: deque[None] = deque()

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> futures.Future[_T]:
        """Queue ``fn`` on the lane's threads and count it until it is done."""
        return _counted_submit(self.counted, super().submit, fn, *args, **kwargs)


def _shed_status() -> grpc.Status:
    """RESOURCE_EXHAUSTED with its RetryInfo in the trailers (gRPC's rich status)."""
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromTimedelta(timedelta(seconds=SHED_RETRY_SECONDS))
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED, message=SHED_DETAILS, details=[detail]
    )
    return rpc_status.to_status(status)


# Built once, at import: every refusal sends these same trailers, so none pays for them.
_SHED_STATUS = _shed_status()


class Refusal:
    """The behaviour of a shed call of one method: counted, then RESOURCE_EXHAUSTED with
    its retry delay, the request left unread."""

    def __init__(
        self, service: str, method: str, pool: futures.ThreadPoolExecutor, count: ShedCounter
    ) -> None:
        self._service = service
        self._method = method
        self._count = count
        # grpcio runs a behaviour that carries this attribute on that pool instead of the
        # server's (grpc_health relies on it too). It is not in gRPC's documented API:
        # test_server_admission fails if refusals ever queue behind the admitted calls.
        self.experimental_thread_pool = pool

    def __call__(self, requests: Iterator[object], context: grpc.ServicerContext) -> None:
        # Counted here, where it is answered: a call past gRPC's backstop passes the
        # interceptor too, but gRPC refuses it without running this.
        self._count(self._service, self._method)
        context.abort_with_status(_SHED_STATUS)


class Admission(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Admits a call while fewer than the limit are in flight, and a stream of the pool's
    streams' lane only while one of the lane's threads is free too (``STREAM_THREADS``),
    though it takes no place among the calls; hands the others to the refusal
    (``Refusal``), which counts them.

    grpcio calls this in its poll thread, for one call at a time, and hands an admitted
    call to the pool (``InFlightPool.submit``) before it calls this for the next: so the
    count read here includes every call admitted before and the limit is never passed.
    That order is grpcio's, not documented; test_server_admission pins it (exactly the
    limit is admitted). Exact counting of shed calls does not depend on it: the refusal
    counts the calls it answers."""

    def __init__(self, pool: InFlightPool, limit: int, count: ShedCounter) -> None:
        self._pool = pool
        self._limit = limit
        self._count = count
        self._health_limit = limit + HEALTH_RESERVE
        self.refusals = futures.ThreadPoolExecutor(
            max_workers=SHED_THREADS, thread_name_prefix="shed"
        )
        # A refusal per method shed so far, made at its first: only methods the server
        # has get here (the others have no handler), so it stays as small as they are few.
        self._shed: dict[str, grpc.RpcMethodHandler] = {}  # type: ignore[type-arg]

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:  # type: ignore[type-arg]
        """The call's handler if it is admitted (or unknown: gRPC answers UNIMPLEMENTED),
        else the refusal."""
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        in_flight = self._pool.in_flight
        path = handler_call_details.method
        if in_flight < self._limit:
            # Only a request-streaming behaviour runs on the lane (reflection's): every
            # other call is admitted without looking for its pool, which costs a unary
            # call a getattr (a caught AttributeError for a bound method, as Check is).
            if not (handler.request_streaming and self._on_stream_lane(handler)):
                return handler
            if self._pool.streams_in_flight < STREAM_THREADS:
                return handler  # a stream a thread of the lane takes at once
        elif in_flight < self._health_limit and path.startswith(_HEALTH_PATH):
            return handler
        refusal = self._shed.get(path)
        if refusal is None:
            service, _, method = path[1:].partition("/")
            refusal = grpc.stream_unary_rpc_method_handler(
                Refusal(service, method, self.refusals, self._count)
            )
            self._shed[path] = refusal
        return refusal

    def _on_stream_lane(self, handler: grpc.RpcMethodHandler) -> bool:  # type: ignore[type-arg]
        """Whether grpcio runs ``handler``'s behaviour, request-streaming, on the pool's
        streams' lane (the behaviour's ``experimental_thread_pool``, as ``Refusal`` uses
        it)."""
        behaviour = handler.stream_unary or handler.stream_stream
        return getattr(behaviour, "experimental_thread_pool", None) is self._pool.streams


def given_up(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The status a call's client already has if it gave up (its deadline passed, it
    cancelled), else None: no answer sent now reaches it."""
    # Our clock first: the deadline travels as a duration, so the client's passed no later
    # than ours, while gRPC marks the call inactive only once its poll thread has run.
    if context.time_remaining() <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return None if context.is_active() else grpc.StatusCode.CANCELLED


def release_pools(stopped: threading.Event, pools: Iterable[futures.Executor]) -> None:
    """Let ``pools`` go once a server's ``stop`` (which returned ``stopped``) has stopped
    it: their threads end as they fall idle. Returns at once either way."""
    if stopped.is_set():  # without grace gRPC returns once it has stopped
        _shut_down(pools)
    else:
        threading.Thread(
            target=_shut_down, args=(pools, stopped), name="server-stop", daemon=True
        ).start()


def _shut_down(pools: Iterable[futures.Executor], stopped: threading.Event | None = None) -> None:
    # Not before gRPC has stopped: until then its poll thread may still hand a call to a
    # pool, and a pool that was shut down raises there. Nor waiting for the pools: a call
    # still running (gRPC cancels it at stop) ends on its own thread.
    if stopped is not None:
        stopped.wait()
    for pool in pools:
        pool.shutdown(wait=False)
