from setpay.v1 import authorization_pb2 as _authorization_pb2
from setpay.v1 import common_pb2 as _common_pb2
from setpay.v1 import error_pb2 as _error_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CapRevOrCredCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAP_REV_OR_CRED_CODE_UNSPECIFIED: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_SUCCESS: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_UNSPECIFIED_FAILURE: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_DUPLICATE_REQUEST: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_ORIGINAL_PROCESSED: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_ORIGINAL_NOT_FOUND: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_CAP_PURGED: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_CAP_DATA_MISMATCH: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_MISSING_CAP_DATA: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_MISSING_CAP_TOKEN: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_INVALID_CAP_TOKEN: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_BATCH_UNKNOWN: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_BATCH_CLOSED: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_AMOUNT_EXCEEDS_ORIGINAL: _ClassVar[CapRevOrCredCode]
    CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS: _ClassVar[CapRevOrCredCode]

class CapRevOrCredKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAP_REV_OR_CRED_KIND_UNSPECIFIED: _ClassVar[CapRevOrCredKind]
    CAP_REV_OR_CRED_KIND_CAPTURE_REVERSAL: _ClassVar[CapRevOrCredKind]
    CAP_REV_OR_CRED_KIND_CREDIT: _ClassVar[CapRevOrCredKind]
    CAP_REV_OR_CRED_KIND_CREDIT_REVERSAL: _ClassVar[CapRevOrCredKind]
CAP_REV_OR_CRED_CODE_UNSPECIFIED: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_SUCCESS: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_UNSPECIFIED_FAILURE: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_DUPLICATE_REQUEST: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_ORIGINAL_PROCESSED: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_ORIGINAL_NOT_FOUND: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_CAP_PURGED: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_CAP_DATA_MISMATCH: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_MISSING_CAP_DATA: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_MISSING_CAP_TOKEN: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_INVALID_CAP_TOKEN: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_BATCH_UNKNOWN: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_BATCH_CLOSED: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_AMOUNT_EXCEEDS_ORIGINAL: CapRevOrCredCode
CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS: CapRevOrCredCode
CAP_REV_OR_CRED_KIND_UNSPECIFIED: CapRevOrCredKind
CAP_REV_OR_CRED_KIND_CAPTURE_REVERSAL: CapRevOrCredKind
CAP_REV_OR_CRED_KIND_CREDIT: CapRevOrCredKind
CAP_REV_OR_CRED_KIND_CREDIT_REVERSAL: CapRevOrCredKind

class CapTokenSeq(_message.Message):
    __slots__ = ("cap_tokens",)
    CAP_TOKENS_FIELD_NUMBER: _ClassVar[int]
    cap_tokens: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, cap_tokens: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CapPayload(_message.Message):
    __slots__ = ("cap_date_unix_ms", "cap_req_amt", "sale_detail")
    CAP_DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CAP_REQ_AMT_FIELD_NUMBER: _ClassVar[int]
    SALE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    cap_date_unix_ms: int
    cap_req_amt: _common_pb2.CurrencyAmount
    sale_detail: _authorization_pb2.SaleDetail
    def __init__(self, cap_date_unix_ms: _Optional[int] = ..., cap_req_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., sale_detail: _Optional[_Union[_authorization_pb2.SaleDetail, _Mapping]] = ...) -> None: ...

class CapItem(_message.Message):
    __slots__ = ("trans_ids", "auth_rrpid", "cap_payload")
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    AUTH_RRPID_FIELD_NUMBER: _ClassVar[int]
    CAP_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    trans_ids: _common_pb2.TransIDs
    auth_rrpid: bytes
    cap_payload: CapPayload
    def __init__(self, trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., auth_rrpid: _Optional[bytes] = ..., cap_payload: _Optional[_Union[CapPayload, _Mapping]] = ...) -> None: ...

class CapReqData(_message.Message):
    __slots__ = ("content_type", "cap_rr_tags", "cap_items", "m_thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAP_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    CAP_ITEMS_FIELD_NUMBER: _ClassVar[int]
    M_THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    cap_rr_tags: _common_pb2.RRTags
    cap_items: _containers.RepeatedCompositeFieldContainer[CapItem]
    m_thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., cap_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., cap_items: _Optional[_Iterable[_Union[CapItem, _Mapping]]] = ..., m_thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class CaptureRequest(_message.Message):
    __slots__ = ("header", "cap_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CAP_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cap_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cap_req: _Optional[bytes] = ...) -> None: ...

class CapResItem(_message.Message):
    __slots__ = ("trans_ids", "auth_rrpid", "cap_res_payload")
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    AUTH_RRPID_FIELD_NUMBER: _ClassVar[int]
    CAP_RES_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    trans_ids: _common_pb2.TransIDs
    auth_rrpid: bytes
    cap_res_payload: _authorization_pb2.CapResPayload
    def __init__(self, trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., auth_rrpid: _Optional[bytes] = ..., cap_res_payload: _Optional[_Union[_authorization_pb2.CapResPayload, _Mapping]] = ...) -> None: ...

class CapResData(_message.Message):
    __slots__ = ("content_type", "cap_rr_tags", "merchant_cert_thumb", "request_digest", "cap_res_items")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAP_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CAP_RES_ITEMS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    cap_rr_tags: _common_pb2.RRTags
    merchant_cert_thumb: bytes
    request_digest: bytes
    cap_res_items: _containers.RepeatedCompositeFieldContainer[CapResItem]
    def __init__(self, content_type: _Optional[str] = ..., cap_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., merchant_cert_thumb: _Optional[bytes] = ..., request_digest: _Optional[bytes] = ..., cap_res_items: _Optional[_Iterable[_Union[CapResItem, _Mapping]]] = ...) -> None: ...

class CaptureResponse(_message.Message):
    __slots__ = ("header", "cap_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CAP_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cap_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cap_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class CapRevOrCredReqItem(_message.Message):
    __slots__ = ("trans_ids", "auth_rrpid", "amount", "new_batch_id", "req_date_unix_ms", "original_rrpid")
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    AUTH_RRPID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    NEW_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    REQ_DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_RRPID_FIELD_NUMBER: _ClassVar[int]
    trans_ids: _common_pb2.TransIDs
    auth_rrpid: bytes
    amount: _common_pb2.CurrencyAmount
    new_batch_id: str
    req_date_unix_ms: int
    original_rrpid: bytes
    def __init__(self, trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., auth_rrpid: _Optional[bytes] = ..., amount: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., new_batch_id: _Optional[str] = ..., req_date_unix_ms: _Optional[int] = ..., original_rrpid: _Optional[bytes] = ...) -> None: ...

class CapRevOrCredReqData(_message.Message):
    __slots__ = ("content_type", "kind", "rr_tags", "items", "m_thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    M_THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    kind: CapRevOrCredKind
    rr_tags: _common_pb2.RRTags
    items: _containers.RepeatedCompositeFieldContainer[CapRevOrCredReqItem]
    m_thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., kind: _Optional[_Union[CapRevOrCredKind, str]] = ..., rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., items: _Optional[_Iterable[_Union[CapRevOrCredReqItem, _Mapping]]] = ..., m_thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class CapRevOrCredResItem(_message.Message):
    __slots__ = ("trans_ids", "auth_rrpid", "code", "actual_amt", "batch_id", "batch_sequence_num")
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    AUTH_RRPID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_AMT_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQUENCE_NUM_FIELD_NUMBER: _ClassVar[int]
    trans_ids: _common_pb2.TransIDs
    auth_rrpid: bytes
    code: CapRevOrCredCode
    actual_amt: _common_pb2.CurrencyAmount
    batch_id: str
    batch_sequence_num: int
    def __init__(self, trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., auth_rrpid: _Optional[bytes] = ..., code: _Optional[_Union[CapRevOrCredCode, str]] = ..., actual_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., batch_id: _Optional[str] = ..., batch_sequence_num: _Optional[int] = ...) -> None: ...

class CapRevOrCredResData(_message.Message):
    __slots__ = ("content_type", "kind", "rr_tags", "merchant_cert_thumb", "request_digest", "items")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    kind: CapRevOrCredKind
    rr_tags: _common_pb2.RRTags
    merchant_cert_thumb: bytes
    request_digest: bytes
    items: _containers.RepeatedCompositeFieldContainer[CapRevOrCredResItem]
    def __init__(self, content_type: _Optional[str] = ..., kind: _Optional[_Union[CapRevOrCredKind, str]] = ..., rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., merchant_cert_thumb: _Optional[bytes] = ..., request_digest: _Optional[bytes] = ..., items: _Optional[_Iterable[_Union[CapRevOrCredResItem, _Mapping]]] = ...) -> None: ...

class CaptureReversalRequest(_message.Message):
    __slots__ = ("header", "cap_rev_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CAP_REV_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cap_rev_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cap_rev_req: _Optional[bytes] = ...) -> None: ...

class CaptureReversalResponse(_message.Message):
    __slots__ = ("header", "cap_rev_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CAP_REV_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cap_rev_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cap_rev_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class CreditRequest(_message.Message):
    __slots__ = ("header", "cred_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CRED_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cred_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cred_req: _Optional[bytes] = ...) -> None: ...

class CreditResponse(_message.Message):
    __slots__ = ("header", "cred_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CRED_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cred_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cred_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class CreditReversalRequest(_message.Message):
    __slots__ = ("header", "cred_rev_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CRED_REV_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cred_rev_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cred_rev_req: _Optional[bytes] = ...) -> None: ...

class CreditReversalResponse(_message.Message):
    __slots__ = ("header", "cred_rev_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CRED_REV_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cred_rev_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cred_rev_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...
