"""The plaintext headers of PCertReq/PCertRes and BatchAdminReq/BatchAdminRes
(SET-PROTOCOL.md 3.1): each signs its RRPID and no transaction, so a header naming another
RRPID, or any XID or LID, is refused."""

from __future__ import annotations

import pytest

from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.gateway_admin import (
    TransactionPage,
    build_batch_admin_response,
    build_pcert_response,
    open_batch_admin_response,
    open_pcert_response,
)

from .certified import Certified, refused
from .pinning_support import gateway_of
from .test_gateway_admin_batch import BA_SUCCESS, _batch, _batch_response, _decision, _open_batch
from .test_gateway_admin_pcert import P_SUCCESS, _open_pcert, _pcert, _pcert_response


@pytest.mark.parametrize("which", ["pcert", "batch"])
@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_request_header_naming_other_ids_is_refused(
    ec_certified: Certified, which: str, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: PCertReq and BatchAdminReq sign their RRPID and no transaction;
    # a header naming another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, opener = (
        (_pcert(c)[0], _open_pcert) if which == "pcert" else (_batch(c)[0], _open_batch)
    )
    assert opener(c, request)  # type: ignore[operator, arg-type]
    setattr(request.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, opener, c, request)
    assert "header ids differ" in reason


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_pcert_response_header_naming_other_ids_is_refused(
    ec_certified: Certified, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: PCertRes signs its RRPID and no transaction; a header naming
    # another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, state = _pcert(c)
    response = _pcert_response(
        build_pcert_response(c.gateway, _open_pcert(c, request), [P_SUCCESS])
    )
    response.header.CopyFrom(request.header)  # as the gateway answers: the request's ids echoed
    assert open_pcert_response(response, c.merchant, state, c.trust()).items[0].code == P_SUCCESS
    setattr(response.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_pcert_response, response, c.merchant,
        state, c.trust(),
    )  # fmt: skip
    assert "header ids differ" in reason


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_batch_admin_response_header_naming_other_ids_is_refused(
    ec_certified: Certified, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: BatchAdminRes signs its RRPID and no transaction; a header
    # naming another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, state = _batch(c, page=TransactionPage(0, 10))
    response = _batch_response(
        build_batch_admin_response(c.gateway, _open_batch(c, request), _decision())
    )
    response.header.CopyFrom(request.header)  # as the gateway answers: the request's ids echoed
    result = open_batch_admin_response(
        response, c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )
    assert result.status == BA_SUCCESS
    setattr(response.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_batch_admin_response, response,
        c.merchant, state, c.trust(), gateway_identity=gateway_of(c),
    )  # fmt: skip
    assert "header ids differ" in reason
