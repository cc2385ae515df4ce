"""How a server's reply to a request header with an id of one size is checked, the bank's
and the merchant's alike (``setcore.echoed_ids``)."""

from __future__ import annotations

from setpay.v1 import common_pb2, error_pb2


def header_with(field: str, value: bytes) -> common_pb2.Header:
    """A request header whose only id is ``field``, set to ``value``."""
    made = common_pb2.Header()
    setattr(made, field, value)
    return made


def assert_echoed_only_at_its_size(
    header: common_pb2.Header, error: error_pb2.SetError, field: str, sent: bytes, echoed: bool
) -> None:
    """The reply's ``header`` echoes ``sent`` as ``field`` if ``echoed``, else leaves it
    empty; its ``error`` names the request's RRPID where it is one, never oversize bytes."""
    assert getattr(header, field) == (sent if echoed else b"")
    named = sent in error.SerializeToString()
    assert named == (echoed and field == "rrpid")
