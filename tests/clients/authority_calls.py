"""What a client sent its CA, for the tests that check a request goes again byte for byte."""

from __future__ import annotations

import pytest

from clients.authority import AuthorityClient
from setpay.v1 import registration_pb2


def sent_cert_requests(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bytes of every CertReq sent from now on (the real call is still made)."""
    sent: list[bytes] = []
    real = AuthorityClient.cert

    def counted(self: AuthorityClient, request: registration_pb2.CertRequest) -> object:
        sent.append(request.SerializeToString())
        return real(self, request)

    monkeypatch.setattr(AuthorityClient, "cert", counted)
    return sent
