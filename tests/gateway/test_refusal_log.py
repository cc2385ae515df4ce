"""What the gateway's log says of a refused request (``gateway.answers``): the request's
RRPID, the code and the reason, with whatever the peer chose cut short.

Every refusal is logged at INFO with its reason, and the reason may quote what the peer
sent (a content type, an algorithm name: ``setcore.errors.quoted``). A peer that fills
those fields, or the header's RRPID, with kilobytes must not have them written to the
log at each request. Real gRPC gateway on port 0 (``tests.gateway.actors``).
"""

from __future__ import annotations

import logging

import pytest

from setcore.authorization import PI_CT
from setcore.errors import MAX_QUOTED_CHARS, quoted
from setcore.freshness import new_id
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import common_pb2, crypto_pb2

from .actors import Merchant, World

# Far more than any name a peer has reason to send: what a hostile one might.
LONG = 10_000
# A refusal's log line: the method, the RRPID, the code and a reason quoting two values
# cut to MAX_QUOTED_CHARS each, with room to spare; nowhere near LONG.
MAX_LINE_CHARS = 600


def _refusal_logged(
    world: World, merchant: Merchant, caplog: pytest.LogCaptureFixture, rrpid: bytes
) -> str:
    """The log line of an AuthReq whose envelope names a KEM of LONG characters."""
    sealed = crypto_pb2.Sealed(
        recipient_cert_thumb=merchant.gateway_kex.thumbprint, kem_alg="K" * LONG,
        aead_alg="A" * LONG, content_type="C" * LONG,
    )  # fmt: skip
    envelope = crypto_pb2.SealedWithBaggage(
        sealed=sealed, baggage_content_type=PI_CT
    ).SerializeToString()
    request = a.AuthorizeRequest(header=common_pb2.Header(rrpid=rrpid), auth_req=envelope)
    with caplog.at_level(logging.INFO, logger="setpay.gateway"):
        response = world.gateway.Authorize(request)
    assert response.WhichOneof("result") == "error"
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    return line


def test_a_refusal_is_logged_with_the_requests_rrpid_and_the_peers_words_cut_short(
    ec_world: World, ec_merchant: Merchant, caplog: pytest.LogCaptureFixture
) -> None:
    rrpid = new_id()
    line = _refusal_logged(ec_world, ec_merchant, caplog, rrpid)
    assert "K" * (MAX_QUOTED_CHARS + 1) not in line
    assert len(line) < MAX_LINE_CHARS
    assert f"({LONG} characters)" in line
    assert line.startswith(f"Authorize {rrpid.hex()[:8]} refused: ERROR_CODE_ALGORITHM_NOT_ALLOWED")


def test_a_header_rrpid_of_any_length_is_logged_by_its_first_bytes_and_its_length(
    ec_world: World, ec_merchant: Merchant, caplog: pytest.LogCaptureFixture
) -> None:
    rrpid = b"\x01" * LONG
    line = _refusal_logged(ec_world, ec_merchant, caplog, rrpid)
    assert line.startswith(f"Authorize {'01' * 4}... ({LONG} bytes) refused: ")
    assert len(line) < MAX_LINE_CHARS


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("setpay.v1.AuthReqData", "'setpay.v1.AuthReqData'"),
        ("a\nforged log line", "'a\\nforged log line'"),  # one line stays one line
        ("x" * MAX_QUOTED_CHARS, repr("x" * MAX_QUOTED_CHARS)),
        ("x" * (MAX_QUOTED_CHARS + 1), f"{'x' * MAX_QUOTED_CHARS!r}... (65 characters)"),
    ],
)
def test_a_peers_value_is_quoted_escaped_and_cut_short(value: str, shown: str) -> None:
    assert quoted(value) == shown
