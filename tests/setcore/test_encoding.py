"""Strict parsing of signed parts: wrong content type, unknown fields, oversize, garbage."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from setcore.encoding import (
    MAX_MESSAGE_BYTES,
    aead_associated_data,
    content_type_of,
    parse_strict,
)
from setcore.errors import ProtocolError
from setpay.v1 import (
    authorization_pb2,
    capture_pb2,
    common_pb2,
    gateway_admin_pb2,
    purchase_pb2,
)

from .refusals import code_name


def _oi() -> purchase_pb2.OIData:
    return purchase_pb2.OIData(
        content_type="setpay.v1.OIData", trans_ids=common_pb2.TransIDs(xid=b"x"), rrpid=b"r"
    )


def test_content_type_is_the_full_proto_name() -> None:
    assert content_type_of(purchase_pb2.OIData) == "setpay.v1.OIData"


def test_round_trip() -> None:
    assert parse_strict(purchase_pb2.OIData, _oi().SerializeToString()).rrpid == b"r"


def test_wrong_content_type_is_refused() -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_strict(purchase_pb2.PIHead, _oi().SerializeToString())
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"


def test_missing_content_type_is_refused() -> None:
    data = purchase_pb2.OIData(rrpid=b"r").SerializeToString()
    with pytest.raises(ProtocolError) as exc:
        parse_strict(purchase_pb2.OIData, data)
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"


def test_unknown_top_level_field_is_refused() -> None:
    data = _oi().SerializeToString() + bytes([0xA8, 0x06, 0x01])  # field 101, varint 1
    with pytest.raises(ProtocolError) as exc:
        parse_strict(purchase_pb2.OIData, data)
    assert code_name(exc) == "ERROR_CODE_UNRECOGNIZED_EXTENSION"


def test_unknown_nested_field_is_refused() -> None:
    trans = common_pb2.TransIDs(xid=b"x").SerializeToString() + bytes([0xA8, 0x06, 0x01])
    data = (
        purchase_pb2.OIData(content_type="setpay.v1.OIData").SerializeToString()
        + bytes([0x12, len(trans)])
        + trans
    )
    with pytest.raises(ProtocolError) as exc:
        parse_strict(purchase_pb2.OIData, data)
    assert code_name(exc) == "ERROR_CODE_UNRECOGNIZED_EXTENSION"
    assert "setpay.v1.OIData.trans_ids" in str(exc.value)  # the path of the unknown field


def _nested_enum_message() -> type[Message]:
    """``setpay.test.Outer``: an enum field of no peer's result codes one message down,
    once and repeated. No setpay message holds one (CertResData's CertStatusCode, the one
    there was, is a result code now), so the walk below the top is tested on this one."""
    file = descriptor_pb2.FileDescriptorProto(
        name="setpay_test_nested_enum.proto", package="setpay.test", syntax="proto3"
    )
    kinds = file.enum_type.add(name="Kind")
    kinds.value.add(name="KIND_UNSPECIFIED", number=0)
    kinds.value.add(name="KIND_ONE", number=1)
    field = descriptor_pb2.FieldDescriptorProto
    inner = file.message_type.add(name="Inner")
    inner.field.add(name="kind", number=1, type=field.TYPE_ENUM, type_name=".setpay.test.Kind")
    outer = file.message_type.add(name="Outer")
    for number, (name, label) in enumerate(
        (("inner", field.LABEL_OPTIONAL), ("inners", field.LABEL_REPEATED)), start=1
    ):
        outer.field.add(
            name=name, number=number, label=label, type=field.TYPE_MESSAGE,
            type_name=".setpay.test.Inner",
        )  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("setpay.test.Outer"))


def test_an_enum_value_the_schema_does_not_define_is_refused_at_any_depth() -> None:
    # proto3 keeps an undefined enum value as a bare number; the code reading it would act
    # on a value it does not know (a batch operation, a request type). A peer's result
    # codes are the exception, never read as an approval (``test_enum_names``).
    top = gateway_admin_pb2.BatchAdminReqData(
        content_type="setpay.v1.BatchAdminReqData",
        batch_operation=999,  # type: ignore[arg-type]
    )
    kind = capture_pb2.CapRevOrCredReqData(content_type="setpay.v1.CapRevOrCredReqData")
    kind.kind = 999  # type: ignore[assignment]
    outer_class = _nested_enum_message()
    nested, repeated = outer_class(), outer_class()
    nested.inner.kind = 999  # type: ignore[attr-defined]
    repeated.inners.add(kind=1)  # type: ignore[attr-defined]
    repeated.inners.add(kind=999)  # type: ignore[attr-defined]
    assert parse_strict(outer_class, outer_class(inners=[{"kind": 1}]).SerializeToString())
    cases = [
        (gateway_admin_pb2.BatchAdminReqData, top, "setpay.v1.BatchAdminReqData.batch_operation"),
        (capture_pb2.CapRevOrCredReqData, kind, "setpay.v1.CapRevOrCredReqData.kind"),
        (outer_class, nested, "setpay.test.Outer.inner.kind"),
        (outer_class, repeated, "setpay.test.Outer.inners.kind"),
    ]
    for message_class, message, path in cases:
        with pytest.raises(ProtocolError) as exc:
            parse_strict(message_class, message.SerializeToString())
        assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"
        assert path in str(exc.value)


def test_every_defined_enum_value_is_accepted() -> None:
    for number in authorization_pb2.AuthCode.values():
        data = authorization_pb2.AuthResData(content_type="setpay.v1.AuthResData")
        data.auth_res_payload.auth_header.auth_code = number
        parsed = parse_strict(authorization_pb2.AuthResData, data.SerializeToString())
        assert parsed.auth_res_payload.auth_header.auth_code == number


def test_a_repeated_field_is_not_taken_for_an_unknown_one() -> None:
    # Not canonical (rrpid twice; the last one wins) but nothing unknown: accepted. The
    # parsed message is smaller than the bytes, which must not look like a dropped field.
    data = _oi().SerializeToString() + purchase_pb2.OIData(rrpid=b"again").SerializeToString()
    parsed = parse_strict(purchase_pb2.OIData, data)
    assert parsed.rrpid == b"again"
    assert parsed.ByteSize() != len(data)


def test_garbage_is_a_decoding_failure() -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_strict(purchase_pb2.OIData, b"\xff\xff\xff\xff")
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_strict(purchase_pb2.OIData, b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert code_name(exc) == "ERROR_CODE_MESSAGE_TOO_BIG"


def test_an_associated_data_field_too_long_for_its_prefix_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="XID of 70000 bytes"):
        aead_associated_data("setpay.v1.PITBE", "body", b"t" * 32, b"x" * 70000, b"")
