from setpay.v1 import common_pb2 as _common_pb2
from setpay.v1 import error_pb2 as _error_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PCertCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    P_CERT_CODE_UNSPECIFIED: _ClassVar[PCertCode]
    P_CERT_CODE_SUCCESS: _ClassVar[PCertCode]
    P_CERT_CODE_UNSPECIFIED_FAILURE: _ClassVar[PCertCode]
    P_CERT_CODE_BRAND_NOT_SUPPORTED: _ClassVar[PCertCode]
    P_CERT_CODE_UNKNOWN_BIN: _ClassVar[PCertCode]

class BatchOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_OPERATION_UNSPECIFIED: _ClassVar[BatchOperation]
    BATCH_OPERATION_OPEN: _ClassVar[BatchOperation]
    BATCH_OPERATION_PURGE: _ClassVar[BatchOperation]
    BATCH_OPERATION_REQUEST: _ClassVar[BatchOperation]
    BATCH_OPERATION_CLOSE: _ClassVar[BatchOperation]

class BatchAdminStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_ADMIN_STATUS_UNSPECIFIED: _ClassVar[BatchAdminStatus]
    BATCH_ADMIN_STATUS_SUCCESS: _ClassVar[BatchAdminStatus]
    BATCH_ADMIN_STATUS_BATCH_UNKNOWN: _ClassVar[BatchAdminStatus]
    BATCH_ADMIN_STATUS_BATCH_CLOSED: _ClassVar[BatchAdminStatus]
    BATCH_ADMIN_STATUS_BATCH_ALREADY_OPEN: _ClassVar[BatchAdminStatus]
    BATCH_ADMIN_STATUS_UNSPECIFIED_FAILURE: _ClassVar[BatchAdminStatus]
    BATCH_ADMIN_STATUS_BATCH_NOT_CLOSED: _ClassVar[BatchAdminStatus]
P_CERT_CODE_UNSPECIFIED: PCertCode
P_CERT_CODE_SUCCESS: PCertCode
P_CERT_CODE_UNSPECIFIED_FAILURE: PCertCode
P_CERT_CODE_BRAND_NOT_SUPPORTED: PCertCode
P_CERT_CODE_UNKNOWN_BIN: PCertCode
BATCH_OPERATION_UNSPECIFIED: BatchOperation
BATCH_OPERATION_OPEN: BatchOperation
BATCH_OPERATION_PURGE: BatchOperation
BATCH_OPERATION_REQUEST: BatchOperation
BATCH_OPERATION_CLOSE: BatchOperation
BATCH_ADMIN_STATUS_UNSPECIFIED: BatchAdminStatus
BATCH_ADMIN_STATUS_SUCCESS: BatchAdminStatus
BATCH_ADMIN_STATUS_BATCH_UNKNOWN: BatchAdminStatus
BATCH_ADMIN_STATUS_BATCH_CLOSED: BatchAdminStatus
BATCH_ADMIN_STATUS_BATCH_ALREADY_OPEN: BatchAdminStatus
BATCH_ADMIN_STATUS_UNSPECIFIED_FAILURE: BatchAdminStatus
BATCH_ADMIN_STATUS_BATCH_NOT_CLOSED: BatchAdminStatus

class PCertReqData(_message.Message):
    __slots__ = ("content_type", "p_cert_rr_tags", "m_thumbs", "brand_and_bins")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    P_CERT_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    M_THUMBS_FIELD_NUMBER: _ClassVar[int]
    BRAND_AND_BINS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    p_cert_rr_tags: _common_pb2.RRTags
    m_thumbs: _common_pb2.Thumbs
    brand_and_bins: _containers.RepeatedCompositeFieldContainer[_common_pb2.BrandAndBIN]
    def __init__(self, content_type: _Optional[str] = ..., p_cert_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., m_thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ..., brand_and_bins: _Optional[_Iterable[_Union[_common_pb2.BrandAndBIN, _Mapping]]] = ...) -> None: ...

class GatewayCertificatesRequest(_message.Message):
    __slots__ = ("header", "p_cert_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    P_CERT_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    p_cert_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., p_cert_req: _Optional[bytes] = ...) -> None: ...

class PCertResItem(_message.Message):
    __slots__ = ("p_cert_code", "brand_and_bin", "key_exchange_cert_thumb", "signature_cert_thumb")
    P_CERT_CODE_FIELD_NUMBER: _ClassVar[int]
    BRAND_AND_BIN_FIELD_NUMBER: _ClassVar[int]
    KEY_EXCHANGE_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    p_cert_code: PCertCode
    brand_and_bin: _common_pb2.BrandAndBIN
    key_exchange_cert_thumb: bytes
    signature_cert_thumb: bytes
    def __init__(self, p_cert_code: _Optional[_Union[PCertCode, str]] = ..., brand_and_bin: _Optional[_Union[_common_pb2.BrandAndBIN, _Mapping]] = ..., key_exchange_cert_thumb: _Optional[bytes] = ..., signature_cert_thumb: _Optional[bytes] = ...) -> None: ...

class PCertResTBS(_message.Message):
    __slots__ = ("content_type", "p_cert_rr_tags", "merchant_cert_thumb", "request_digest", "items")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    P_CERT_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    p_cert_rr_tags: _common_pb2.RRTags
    merchant_cert_thumb: bytes
    request_digest: bytes
    items: _containers.RepeatedCompositeFieldContainer[PCertResItem]
    def __init__(self, content_type: _Optional[str] = ..., p_cert_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., merchant_cert_thumb: _Optional[bytes] = ..., request_digest: _Optional[bytes] = ..., items: _Optional[_Iterable[_Union[PCertResItem, _Mapping]]] = ...) -> None: ...

class GatewayCertificatesResponse(_message.Message):
    __slots__ = ("header", "p_cert_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    P_CERT_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    p_cert_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., p_cert_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class ReturnTransactionDetail(_message.Message):
    __slots__ = ("starting_point", "maximum_items")
    STARTING_POINT_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_ITEMS_FIELD_NUMBER: _ClassVar[int]
    starting_point: int
    maximum_items: int
    def __init__(self, starting_point: _Optional[int] = ..., maximum_items: _Optional[int] = ...) -> None: ...

class BatchStatus(_message.Message):
    __slots__ = ("open_date_unix_ms", "close_date_unix_ms", "closed", "captured_total", "capture_count", "credited_total", "credit_count", "capture_reversed_total", "capture_reversal_count", "credit_reversed_total", "credit_reversal_count", "net_total")
    OPEN_DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREDITED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREDIT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_REVERSED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_REVERSAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_REVERSED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREDIT_REVERSAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    NET_TOTAL_FIELD_NUMBER: _ClassVar[int]
    open_date_unix_ms: int
    close_date_unix_ms: int
    closed: bool
    captured_total: _common_pb2.CurrencyAmount
    capture_count: int
    credited_total: _common_pb2.CurrencyAmount
    credit_count: int
    capture_reversed_total: _common_pb2.CurrencyAmount
    capture_reversal_count: int
    credit_reversed_total: _common_pb2.CurrencyAmount
    credit_reversal_count: int
    net_total: _common_pb2.CurrencyAmount
    def __init__(self, open_date_unix_ms: _Optional[int] = ..., close_date_unix_ms: _Optional[int] = ..., closed: _Optional[bool] = ..., captured_total: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., capture_count: _Optional[int] = ..., credited_total: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., credit_count: _Optional[int] = ..., capture_reversed_total: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., capture_reversal_count: _Optional[int] = ..., credit_reversed_total: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., credit_reversal_count: _Optional[int] = ..., net_total: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ...) -> None: ...

class TransactionDetail(_message.Message):
    __slots__ = ("xid", "rrpid", "kind", "amount", "batch_sequence_num")
    XID_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQUENCE_NUM_FIELD_NUMBER: _ClassVar[int]
    xid: bytes
    rrpid: bytes
    kind: str
    amount: _common_pb2.CurrencyAmount
    batch_sequence_num: int
    def __init__(self, xid: _Optional[bytes] = ..., rrpid: _Optional[bytes] = ..., kind: _Optional[str] = ..., amount: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., batch_sequence_num: _Optional[int] = ...) -> None: ...

class BatchAdminReqData(_message.Message):
    __slots__ = ("content_type", "batch_admin_rr_tags", "batch_id", "batch_operation", "return_batch_summary_ind", "return_transaction_detail")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BATCH_ADMIN_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_OPERATION_FIELD_NUMBER: _ClassVar[int]
    RETURN_BATCH_SUMMARY_IND_FIELD_NUMBER: _ClassVar[int]
    RETURN_TRANSACTION_DETAIL_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    batch_admin_rr_tags: _common_pb2.RRTags
    batch_id: str
    batch_operation: BatchOperation
    return_batch_summary_ind: bool
    return_transaction_detail: ReturnTransactionDetail
    def __init__(self, content_type: _Optional[str] = ..., batch_admin_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., batch_id: _Optional[str] = ..., batch_operation: _Optional[_Union[BatchOperation, str]] = ..., return_batch_summary_ind: _Optional[bool] = ..., return_transaction_detail: _Optional[_Union[ReturnTransactionDetail, _Mapping]] = ...) -> None: ...

class BatchAdminRequest(_message.Message):
    __slots__ = ("header", "batch_admin_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_ADMIN_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    batch_admin_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., batch_admin_req: _Optional[bytes] = ...) -> None: ...

class BatchAdminResData(_message.Message):
    __slots__ = ("content_type", "batch_admin_rr_tags", "merchant_cert_thumb", "request_digest", "batch_id", "status", "batch_status", "transaction_details", "next_starting_point")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BATCH_ADMIN_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BATCH_STATUS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_DETAILS_FIELD_NUMBER: _ClassVar[int]
    NEXT_STARTING_POINT_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    batch_admin_rr_tags: _common_pb2.RRTags
    merchant_cert_thumb: bytes
    request_digest: bytes
    batch_id: str
    status: BatchAdminStatus
    batch_status: BatchStatus
    transaction_details: _containers.RepeatedCompositeFieldContainer[TransactionDetail]
    next_starting_point: int
    def __init__(self, content_type: _Optional[str] = ..., batch_admin_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., merchant_cert_thumb: _Optional[bytes] = ..., request_digest: _Optional[bytes] = ..., batch_id: _Optional[str] = ..., status: _Optional[_Union[BatchAdminStatus, str]] = ..., batch_status: _Optional[_Union[BatchStatus, _Mapping]] = ..., transaction_details: _Optional[_Iterable[_Union[TransactionDetail, _Mapping]]] = ..., next_starting_point: _Optional[int] = ...) -> None: ...

class BatchAdminResponse(_message.Message):
    __slots__ = ("header", "batch_admin_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_ADMIN_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    batch_admin_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., batch_admin_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...
