"""A lifeline (``--lifeline-fd``) is a pipe's read end only, and a read of it that fails
is its end: never an error out of the loop that hears the stop signals.

``open_lifeline`` took any pipe or socket. A pipe's write end (``--lifeline-fd 1`` with the
output piped) could not be read: the bank died at start with a traceback (EBADF); a socket
reset by its peer raised ``ConnectionResetError`` out of the supervisor's loop mid-serve.
And the supervisor registered its lifeline before its ``try``: a failure there left its
selector open.
"""

from __future__ import annotations

import os
import selectors
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import gateway
from cli.main import build_parser
from gateway.config import BankConfig
from gateway.stop_signals import lifeline_ended, open_lifeline
from gateway.supervisor_signals import SupervisorSignals
from gateway.worker import WorkerPlan
from gateway.workers import Supervisor


@pytest.fixture
def reset_socket() -> Iterator[tuple[int, socket.socket]]:
    """A connected TCP socket's descriptor (ours to close), and its peer, not yet reset."""
    server = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    server.close()
    try:
        yield ours.detach(), peer
    finally:
        peer.close()


def _reset(peer: socket.socket) -> None:
    """Close ``peer`` with a reset (linger 0), not an orderly end."""
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    peer.close()


def test_a_pipe_s_read_end_is_a_lifeline() -> None:
    read, write = os.pipe()
    try:
        assert open_lifeline(read) == read
        assert not os.get_blocking(read) and not os.get_inheritable(read)
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize("what", ["a pipe's write end", "a socket", "a socket pair's end"])
def test_anything_but_a_pipe_s_read_end_is_refused(what: str) -> None:
    read, write = os.pipe()
    pair = socket.socketpair()
    listening = socket.socket()
    try:
        fd = {
            "a pipe's write end": write,
            "a socket": listening.fileno(),
            "a socket pair's end": pair[0].fileno(),
        }[what]
        with pytest.raises(ValueError, match=f"descriptor {fd} is no pipe's read end"):
            open_lifeline(fd)
    finally:
        os.close(read)
        os.close(write)
        pair[0].close()
        pair[1].close()
        listening.close()


def test_a_pipe_s_write_end_given_to_the_bank_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``setpay gateway serve --lifeline-fd 1 | tee log``: refused before anything starts,
    not a traceback once the supervisor reads it."""
    read, write = os.pipe()
    try:
        args = build_parser().parse_args(
            ["gateway", "serve", "--config", str(tmp_path / "none.toml"), "--lifeline-fd",
             str(write)]
        )  # fmt: skip
        assert gateway.run(args) == 2
    finally:
        os.close(read)
        os.close(write)
    err = capsys.readouterr().err
    assert err == f"setpay gateway: --lifeline-fd: descriptor {write} is no pipe's read end\n"


def test_a_read_that_fails_is_the_lifeline_s_end() -> None:
    """Not an ``OSError`` (here EBADF: a descriptor that cannot be read); a lifeline
    with nothing to read has not ended."""
    read, write = os.pipe()
    try:
        os.set_blocking(read, False)
        assert not lifeline_ended(read)
        assert lifeline_ended(write)
    finally:
        os.close(read)
        os.close(write)


def test_a_reset_lifeline_is_a_stop_request_not_an_error_out_of_the_loop(
    reset_socket: tuple[int, socket.socket],
) -> None:
    fd, peer = reset_socket
    os.set_blocking(fd, False)  # as ``open_lifeline`` took a socket, before
    signals = SupervisorSignals(fd)
    selector = selectors.DefaultSelector()
    try:
        signals.catch()
        signals.watch(selector, "wake")
        assert not signals.stop_requested
        _reset(peer)
        assert [key.data for key, _ in selector.select(5.0)] == ["wake"]
        signals.drain()  # raised ConnectionResetError
        assert signals.stop_requested
        assert len(selector.get_map()) == 1  # watched no more
    finally:
        selector.close()
        signals.close()


def test_the_supervisor_closes_its_selector_when_the_lifeline_cannot_be_watched(
    tmp_path: Path,
) -> None:
    """A file's descriptor, which epoll refuses (EPERM): the failure comes out of ``run``,
    its selector closed."""
    plan = WorkerPlan(
        config=BankConfig(base_dir=tmp_path),
        listen="127.0.0.1:0",
        ca_listen="127.0.0.1:0",
        metrics=False,
        supervisor_pid=os.getpid(),
    )
    signals = SupervisorSignals(os.open(tmp_path / "file", os.O_RDONLY | os.O_CREAT, 0o600))
    supervisor = Supervisor(plan, 1, signals=signals, inherited=[])
    try:
        with pytest.raises(PermissionError):
            supervisor.run()
        assert supervisor._selector.get_map() is None  # closed
    finally:
        supervisor._selector.close()
        signals.close()
