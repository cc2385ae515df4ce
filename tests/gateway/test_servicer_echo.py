"""The PaymentGateway's reply echoes a request header's ids only where each has its size.

The ids are read from the plaintext header before anything of the request is checked,
so a refusal echoes them too (``setcore.echoed_ids``). Echoed as sent, an id of hundreds
of kilobytes made a reply past the bank's message limit: gRPC refused to send it and the
merchant got RESOURCE_EXHAUSTED, not the SET Error meant for it.

Real gRPC gateway on port 0, real keys (``tests.gateway.actors``).
"""

from __future__ import annotations

import pytest

from setcore.freshness import ID_BYTES, MAX_LID_BYTES
from setpay.v1 import authorization_pb2 as a
from tests.setcore.echo_support import assert_echoed_only_at_its_size, header_with

from .actors import World


@pytest.mark.parametrize(
    ("field", "size", "echoed"),
    [
        ("rrpid", ID_BYTES, True),
        ("rrpid", 600_000, False),
        ("rrpid", ID_BYTES - 1, False),
        ("xid", 600_000, False),
        ("lid_m", MAX_LID_BYTES, True),
        ("lid_c", 600_000, False),
    ],
)
def test_a_refusal_echoes_a_header_id_only_at_its_size(
    ec_world: World, field: str, size: int, echoed: bool
) -> None:
    sent = b"i" * size
    request = a.AuthorizeRequest(header=header_with(field, sent), auth_req=b"garbage")
    reply = ec_world.gateway.Authorize(request)
    assert reply.WhichOneof("result") == "error"  # the SET Error meant for it
    assert_echoed_only_at_its_size(reply.header, reply.error, field, sent, echoed)
