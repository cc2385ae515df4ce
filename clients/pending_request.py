"""A certificate request kept until the CA decides it, as both requesters record it.

The merchant (``registration.json``, ``clients.merchant.registration_pending``) and the
wallet (the sealed card file, ``clients.wallet.pending``) keep the same fields of a
request's exchange, base64 in JSON: ``lid_ee``, ``lid_ca``, ``ca_certificate``, and while
the CertReq is unanswered its exact bytes (``cert_request``) with ``rrpid`` and
``chall_ee3``. Each rebuilds the exchange here and the rest of its state itself.

Errors: a record that cannot be read raises ``KeyError``, ``ValueError``, ``TypeError``
or protobuf's ``DecodeError``, which each caller turns into its ``RegistrationError``; a
CA certificate that no longer verifies raises the trust store's error.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from setcore.error_message import request_digest
from setcore.freshness import new_id
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.registration_certreq import Exchange
from setpay.v1 import registration_pb2


def resumed_exchange(
    record: Mapping[str, Any], trust: TrustStore, ca_type: int
) -> tuple[Exchange, registration_pb2.CertRequest | None]:
    """The recorded request's exchange with its CA (of ``ca_type``), and the CertReq to
    send again if it is still unanswered (else fresh RRPID and challenge, for CertInq)."""
    ca = trust.verify_chain(
        base64.b64decode(record["ca_certificate"]), (), ca_type, CertificateUsage.SIGNATURE
    )
    request = None
    rrpid, chall_ee3, sent = new_id(), new_id(), b""
    if "cert_request" in record:
        request = registration_pb2.CertRequest.FromString(base64.b64decode(record["cert_request"]))
        rrpid = base64.b64decode(record["rrpid"])
        chall_ee3 = base64.b64decode(record["chall_ee3"])
        sent = request_digest(request.DESCRIPTOR.full_name, request.cert_req)
    exchange = Exchange(
        rrpid, chall_ee3, base64.b64decode(record["lid_ee"]),
        base64.b64decode(record["lid_ca"]), ca, request_digest=sent,
    )  # fmt: skip
    return exchange, request
