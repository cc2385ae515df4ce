"""Calls to the brand's CertificateAuthority service: registration and revocation data.

Thin: each method sends one request's exact bytes with its deadline and returns the
response message; the registration protocol's checks are ``setcore.registration``'s.
Transport failures raise ``clients.errors.TransportError``.
"""

from __future__ import annotations

from collections.abc import Sequence

from clients.transport import Caller
from setcore.purchase import header
from setpay.v1 import registration_pb2, services_pb2

_SERVICE = services_pb2.DESCRIPTOR.services_by_name["CertificateAuthorityService"].full_name
# A CA answers from its own database and key; ten seconds only bounds a hang. Issuing
# certificates may wait on an HSM signature, still far below that.
CA_DEADLINE_SECONDS = 10.0


def method(name: str) -> str:
    """The full gRPC method path of a CertificateAuthority RPC."""
    return f"/{_SERVICE}/{name}"


class AuthorityClient:
    """The CertificateAuthority service of one brand, over one channel."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    def revocation(self, brand_id: str) -> tuple[bytes, Sequence[bytes]]:
        """The brand's current signed BCI and the CRLs it lists (unverified: the trust store
        verifies them before use)."""
        request = registration_pb2.GetBrandCRLIdentifierRequest(header=header(), brand_id=brand_id)
        response = self._caller.call(
            method("GetBrandCRLIdentifier"), request.SerializeToString(),
            registration_pb2.GetBrandCRLIdentifierResponse, deadline=CA_DEADLINE_SECONDS,
        )  # fmt: skip
        return response.brand_crl_identifier, tuple(response.crls)

    def card_c_init(
        self, request: registration_pb2.CardCInitRequest, *, sent: bytes | None = None
    ) -> registration_pb2.CardCInitResponse:
        """Cardholder registration, step 1; ``sent``: the request's bytes as its builder
        serialized and hashed them (``CardCInitState.sent``), sent as they are."""
        return self._caller.call(
            method("CardCInit"), request.SerializeToString() if sent is None else sent,
            registration_pb2.CardCInitResponse, deadline=CA_DEADLINE_SECONDS,
        )  # fmt: skip

    def reg_form(
        self, request: registration_pb2.RegFormRequest
    ) -> registration_pb2.RegFormResponse:
        """Cardholder registration, step 2 (the PAN is sealed to the CA)."""
        return self._caller.call(
            method("RegForm"), request.SerializeToString(),
            registration_pb2.RegFormResponse, deadline=CA_DEADLINE_SECONDS,
        )  # fmt: skip

    def me_aq_c_init(
        self, request: registration_pb2.MeAqCInitRequest, *, sent: bytes | None = None
    ) -> registration_pb2.MeAqCInitResponse:
        """Merchant registration, step 1; ``sent``: the request's bytes as its builder
        serialized and hashed them (``MeAqCInitState.sent``), sent as they are."""
        return self._caller.call(
            method("MeAqCInit"), request.SerializeToString() if sent is None else sent,
            registration_pb2.MeAqCInitResponse, deadline=CA_DEADLINE_SECONDS,
        )  # fmt: skip

    def cert(self, request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
        """Certificate request (issue or renew)."""
        return self._caller.call(
            method("Cert"), request.SerializeToString(),
            registration_pb2.CertResponse, deadline=CA_DEADLINE_SECONDS,
        )  # fmt: skip

    def cert_inq(
        self, request: registration_pb2.CertInqRequest
    ) -> registration_pb2.CertInqResponse:
        """Poll a pended certificate request."""
        return self._caller.call(
            method("CertInq"), request.SerializeToString(),
            registration_pb2.CertInqResponse, deadline=CA_DEADLINE_SECONDS,
        )  # fmt: skip
