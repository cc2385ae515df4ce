"""The TransIDs digest a capture token binds (``setcore.capture.trans_ids_digest``).

Tokens outlive the process that sealed them, so the digest is fixed by a known answer;
and it must change with every TransIDs field, or an item could name the authorization
with that field changed and have the gateway sign it back.
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor

from setcore.capture import check_token_is_for, trans_ids_digest
from setcore.errors import ErrorCode, ProtocolError
from setpay.v1 import authorization_pb2, common_pb2

XID = bytes(range(32))
RRPID = bytes(range(32, 64))


def _ids() -> common_pb2.TransIDs:
    return common_pb2.TransIDs(
        lid_c=b"lid-c", lid_m=b"lid-m", xid=XID, preq_date_unix_ms=1_700_000_000_000,
        pay_sys_id="", language="en",
    )  # fmt: skip


def _changed(ids: common_pb2.TransIDs, field: FieldDescriptor) -> common_pb2.TransIDs:
    other = common_pb2.TransIDs()
    other.CopyFrom(ids)
    value = getattr(ids, field.name)
    if field.type == FieldDescriptor.TYPE_BYTES:
        setattr(other, field.name, value + b"x")
    elif field.type == FieldDescriptor.TYPE_STRING:
        setattr(other, field.name, value + "x")
    elif field.type == FieldDescriptor.TYPE_INT64:
        setattr(other, field.name, value + 1)
    else:  # a field of a kind this test does not know: the digest must be looked at
        raise AssertionError(f"TransIDs.{field.name}: no change defined for its type")
    return other


def test_the_digest_is_the_one_tokens_were_sealed_with() -> None:
    # A change of encoding would refuse every token outstanding: UNKNOWN_LID for captures
    # the cardholder and the merchant agree on.
    assert trans_ids_digest(_ids()).hex() == (
        "7fa11cf33aef54679f6b34e22d5dba0c0a6a5f321a4805765bd4703ef46c0000"
    )


@pytest.mark.parametrize("field", list(common_pb2.TransIDs.DESCRIPTOR.fields), ids=lambda f: f.name)
def test_every_field_changes_the_digest(field: FieldDescriptor) -> None:
    ids = _ids()
    assert trans_ids_digest(_changed(ids, field)) != trans_ids_digest(ids)


def test_a_date_before_1970_is_digested_and_told_from_others() -> None:
    # The date is a signed int64: an unsigned encoding would crash on a negative one (an
    # item's PReqDate is the merchant's to write), where the check must say UNKNOWN_LID.
    ids = _ids()
    ids.preq_date_unix_ms = -1
    earlier = _ids()
    earlier.preq_date_unix_ms = -2
    assert trans_ids_digest(ids) != trans_ids_digest(earlier) != trans_ids_digest(_ids())
    with pytest.raises(ProtocolError) as caught:
        check_token_is_for(_token(trans_ids_digest(_ids())), ids, RRPID)
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def test_a_value_moved_to_the_next_field_changes_the_digest() -> None:
    # Each field is length-prefixed: LID-C "ab" and LID-M "" is not LID-C "a", LID-M "b".
    one = common_pb2.TransIDs(lid_c=b"ab", lid_m=b"", xid=XID)
    other = common_pb2.TransIDs(lid_c=b"a", lid_m=b"b", xid=XID)
    assert trans_ids_digest(one) != trans_ids_digest(other)


def _token(digest: bytes) -> authorization_pb2.CapTokenData:
    return authorization_pb2.CapTokenData(xid=XID, auth_rrpid=RRPID, trans_ids_digest=digest)


def test_a_token_refuses_ids_other_than_the_authorized_ones() -> None:
    token = _token(trans_ids_digest(_ids()))
    check_token_is_for(token, _ids(), RRPID)  # as authorized: accepted
    other = _ids()
    other.lid_m = b"another order"
    with pytest.raises(ProtocolError) as caught:
        check_token_is_for(token, other, RRPID)
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def test_another_xid_is_still_unknown_xid_before_any_digest() -> None:
    token = _token(trans_ids_digest(_ids()))
    other = _ids()
    other.xid = bytes(32)
    with pytest.raises(ProtocolError) as caught:
        check_token_is_for(token, other, RRPID)
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_XID


def test_a_token_sealed_before_the_digest_binds_the_xid_alone() -> None:
    # Still outstanding in banks that ran the earlier release: accepted as they were.
    other = _ids()
    other.lid_m = b"another order"
    check_token_is_for(_token(b""), other, RRPID)
