"""The ids a reply echoes from its request's plaintext header, where they have the right size.

A reply names the request it answers by echoing the ids of the request's header (SET's
RRPID, XID, LID-C and LID-M), read before anything of the request is checked: a refusal
echoes them too. An id of the wrong size is no id of ours: echoed as sent, a header id of
hundreds of kilobytes made a reply gRPC refused to send, its client told
RESOURCE_EXHAUSTED instead of the SET Error meant for it. So each id is echoed only when
it has the size its kind has (``setcore.freshness``), else left empty: the reply is
still the answer, only unnamed in its plaintext header (which is a hint, never checked
against the signed ids unless it names them: ``setcore.purchase.check_header``).
"""

from __future__ import annotations

from setcore.freshness import ID_BYTES, MAX_LID_BYTES
from setcore.purchase import header
from setpay.v1 import common_pb2


def echoed_id(value: bytes) -> bytes:
    """``value`` if it is an RRPID's or XID's size (``ID_BYTES``), else empty."""
    return value if len(value) == ID_BYTES else b""


def echoed_lid(value: bytes) -> bytes:
    """``value`` if it is within a local label's bound (``MAX_LID_BYTES``), else empty."""
    return value if len(value) <= MAX_LID_BYTES else b""


def reply_header(request_header: common_pb2.Header) -> common_pb2.Header:
    """The reply's routing header: the request's ids echoed where well sized, our date."""
    return header(
        rrpid=echoed_id(request_header.rrpid),
        xid=echoed_id(request_header.xid),
        lid_c=echoed_lid(request_header.lid_c),
        lid_m=echoed_lid(request_header.lid_m),
    )
