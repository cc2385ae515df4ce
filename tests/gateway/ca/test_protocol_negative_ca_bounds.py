"""The CA's own bounds and routing checks, each broken alone: a certificate fetch naming
more thumbprints than the CA looks up, and a Me-AqCInitReq handed to the registrar of the
other acquirer CA (SET-PROTOCOL.md 4.2/4.3: a merchant registers with the Merchant CA, a
gateway with the Payment Gateway CA, and neither answers for the other)."""

from __future__ import annotations

from contextlib import closing

import grpc
import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca.authority import MAX_FETCH_CERTIFICATES
from gateway.ca.merchant import MerchantRegistrar
from gateway.ca.policy import CaPolicy
from setcore.errors import ErrorCode
from setcore.freshness import now_ms
from setcore.registration import request_kind
from setcore.registration_merchant import (
    GatewayIdentity,
    MerchantIdentity,
    build_me_aq_c_init_request,
)
from setpay.v1 import registration_pb2
from tests.setcore.refusals import refused

from .conftest import Bank


def test_a_certificate_fetch_of_too_many_thumbprints_is_refused(ec_bank: Bank) -> None:
    # The bound keeps one request from costing the CA an unbounded lookup; thumbprints of
    # certificates it holds, so that without the bound the fetch would answer them.
    known = ec_bank.pki.cca.signature_thumb
    assert ec_bank.ca.certificates([known])
    wanted = [known] * (MAX_FETCH_CERTIFICATES + 1)
    reason = refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG, ec_bank.ca.certificates, wanted)
    assert reason == "too many thumbprints"
    with pytest.raises(grpc.RpcError) as caught:
        ec_bank.stub.GetCertificates(registration_pb2.GetCertificatesRequest(thumbs=wanted))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "too many thumbprints"
    assert ec_bank.ca.certificates(wanted[:MAX_FETCH_CERTIFICATES])


@pytest.mark.parametrize(
    ("registrar_of", "request_type", "identity"),
    [
        (
            "merchant",
            registration_pb2.REQUEST_TYPE_PGWY_INITIAL_BOTH,
            GatewayIdentity("123456", "Acquirer"),
        ),
        (
            "gateway",
            registration_pb2.REQUEST_TYPE_MER_INITIAL_BOTH,
            MerchantIdentity("m-0001", "Corner Shop"),
        ),
    ],
)
def test_a_registrar_refuses_a_me_aq_c_init_req_for_the_other_ca(
    ec_bank: Bank, registrar_of: str, request_type: int, identity: object
) -> None:
    # The CertificateAuthority routes by request kind; this is the registrar's own guard,
    # so that a routing mistake cannot open a gateway's session at the Merchant CA.
    keys = ec_bank.ca.keys
    side = keys.merchant if registrar_of == "merchant" else keys.gateway
    request, _ = build_me_aq_c_init_request(request_type, identity, ec_bank.brand_id, b"lid-m")  # type: ignore[arg-type]
    with closing(open_ca_store(ec_bank.config)) as store:
        registrar = MerchantRegistrar(
            side, store, ec_bank.pki.trust, ec_bank.issuer, CaPolicy(),
            ec_bank.ca.watcher.current, now_ms,
        )  # fmt: skip
        kind = request_kind(request_type)
        reason = refused(
            ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED,
            registrar.me_aq_c_init, request, kind, identity,
        )  # fmt: skip
    assert reason == "request for another CA"
