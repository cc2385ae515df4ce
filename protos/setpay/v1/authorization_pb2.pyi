from setpay.v1 import common_pb2 as _common_pb2
from setpay.v1 import error_pb2 as _error_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTH_CODE_UNSPECIFIED: _ClassVar[AuthCode]
    AUTH_CODE_APPROVED: _ClassVar[AuthCode]
    AUTH_CODE_UNSPECIFIED_FAILURE: _ClassVar[AuthCode]
    AUTH_CODE_DECLINED: _ClassVar[AuthCode]
    AUTH_CODE_NO_REPLY: _ClassVar[AuthCode]
    AUTH_CODE_CALL_ISSUER: _ClassVar[AuthCode]
    AUTH_CODE_AMOUNT_ERROR: _ClassVar[AuthCode]
    AUTH_CODE_EXPIRED_CARD: _ClassVar[AuthCode]
    AUTH_CODE_INVALID_TRANSACTION: _ClassVar[AuthCode]
    AUTH_CODE_SYSTEM_ERROR: _ClassVar[AuthCode]
    AUTH_CODE_PI_PREVIOUSLY_USED: _ClassVar[AuthCode]
    AUTH_CODE_RECURRING_TOO_SOON: _ClassVar[AuthCode]
    AUTH_CODE_RECURRING_EXPIRED: _ClassVar[AuthCode]
    AUTH_CODE_PI_AUTH_MISMATCH: _ClassVar[AuthCode]
    AUTH_CODE_INSTALL_RECUR_MISMATCH: _ClassVar[AuthCode]
    AUTH_CODE_CAPTURE_NOT_SUPPORTED: _ClassVar[AuthCode]
    AUTH_CODE_SIGNATURE_REQUIRED: _ClassVar[AuthCode]
    AUTH_CODE_CARD_MERCH_BRAND_MISMATCH: _ClassVar[AuthCode]

class RespReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESP_REASON_UNSPECIFIED: _ClassVar[RespReason]
    RESP_REASON_INSUFFICIENT_FUNDS: _ClassVar[RespReason]
    RESP_REASON_EXPIRED_CARD: _ClassVar[RespReason]
    RESP_REASON_BLOCKED_ACCOUNT: _ClassVar[RespReason]
    RESP_REASON_UNKNOWN_ACCOUNT: _ClassVar[RespReason]
    RESP_REASON_AMOUNT_MISMATCH: _ClassVar[RespReason]
    RESP_REASON_CLOSED_ACCOUNT: _ClassVar[RespReason]
    RESP_REASON_CURRENCY_MISMATCH: _ClassVar[RespReason]

class AuthRevCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTH_REV_CODE_UNSPECIFIED: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_APPROVED: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_UNSPECIFIED_FAILURE: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_NO_REPLY: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_AMOUNT_ERROR: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_EXPIRED_CARD: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_INVALID_TRANSACTION: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_SYSTEM_ERROR: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_MISSING_CAP_TOKEN: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_INVALID_CAP_TOKEN: _ClassVar[AuthRevCode]
    AUTH_REV_CODE_INVALID_AMOUNT: _ClassVar[AuthRevCode]

class CapCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAP_CODE_UNSPECIFIED: _ClassVar[CapCode]
    CAP_CODE_SUCCESS: _ClassVar[CapCode]
    CAP_CODE_UNSPECIFIED_FAILURE: _ClassVar[CapCode]
    CAP_CODE_DUPLICATE_REQUEST: _ClassVar[CapCode]
    CAP_CODE_AUTH_EXPIRED: _ClassVar[CapCode]
    CAP_CODE_AUTH_DATA_MISSING: _ClassVar[CapCode]
    CAP_CODE_INVALID_AUTH_DATA: _ClassVar[CapCode]
    CAP_CODE_CAP_TOKEN_MISSING: _ClassVar[CapCode]
    CAP_CODE_INVALID_CAP_TOKEN: _ClassVar[CapCode]
    CAP_CODE_BATCH_UNKNOWN: _ClassVar[CapCode]
    CAP_CODE_BATCH_CLOSED: _ClassVar[CapCode]
    CAP_CODE_UNKNOWN_XID: _ClassVar[CapCode]
    CAP_CODE_UNKNOWN_LID: _ClassVar[CapCode]
    CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION: _ClassVar[CapCode]
AUTH_CODE_UNSPECIFIED: AuthCode
AUTH_CODE_APPROVED: AuthCode
AUTH_CODE_UNSPECIFIED_FAILURE: AuthCode
AUTH_CODE_DECLINED: AuthCode
AUTH_CODE_NO_REPLY: AuthCode
AUTH_CODE_CALL_ISSUER: AuthCode
AUTH_CODE_AMOUNT_ERROR: AuthCode
AUTH_CODE_EXPIRED_CARD: AuthCode
AUTH_CODE_INVALID_TRANSACTION: AuthCode
AUTH_CODE_SYSTEM_ERROR: AuthCode
AUTH_CODE_PI_PREVIOUSLY_USED: AuthCode
AUTH_CODE_RECURRING_TOO_SOON: AuthCode
AUTH_CODE_RECURRING_EXPIRED: AuthCode
AUTH_CODE_PI_AUTH_MISMATCH: AuthCode
AUTH_CODE_INSTALL_RECUR_MISMATCH: AuthCode
AUTH_CODE_CAPTURE_NOT_SUPPORTED: AuthCode
AUTH_CODE_SIGNATURE_REQUIRED: AuthCode
AUTH_CODE_CARD_MERCH_BRAND_MISMATCH: AuthCode
RESP_REASON_UNSPECIFIED: RespReason
RESP_REASON_INSUFFICIENT_FUNDS: RespReason
RESP_REASON_EXPIRED_CARD: RespReason
RESP_REASON_BLOCKED_ACCOUNT: RespReason
RESP_REASON_UNKNOWN_ACCOUNT: RespReason
RESP_REASON_AMOUNT_MISMATCH: RespReason
RESP_REASON_CLOSED_ACCOUNT: RespReason
RESP_REASON_CURRENCY_MISMATCH: RespReason
AUTH_REV_CODE_UNSPECIFIED: AuthRevCode
AUTH_REV_CODE_APPROVED: AuthRevCode
AUTH_REV_CODE_UNSPECIFIED_FAILURE: AuthRevCode
AUTH_REV_CODE_NO_REPLY: AuthRevCode
AUTH_REV_CODE_AMOUNT_ERROR: AuthRevCode
AUTH_REV_CODE_EXPIRED_CARD: AuthRevCode
AUTH_REV_CODE_INVALID_TRANSACTION: AuthRevCode
AUTH_REV_CODE_SYSTEM_ERROR: AuthRevCode
AUTH_REV_CODE_MISSING_CAP_TOKEN: AuthRevCode
AUTH_REV_CODE_INVALID_CAP_TOKEN: AuthRevCode
AUTH_REV_CODE_INVALID_AMOUNT: AuthRevCode
CAP_CODE_UNSPECIFIED: CapCode
CAP_CODE_SUCCESS: CapCode
CAP_CODE_UNSPECIFIED_FAILURE: CapCode
CAP_CODE_DUPLICATE_REQUEST: CapCode
CAP_CODE_AUTH_EXPIRED: CapCode
CAP_CODE_AUTH_DATA_MISSING: CapCode
CAP_CODE_INVALID_AUTH_DATA: CapCode
CAP_CODE_CAP_TOKEN_MISSING: CapCode
CAP_CODE_INVALID_CAP_TOKEN: CapCode
CAP_CODE_BATCH_UNKNOWN: CapCode
CAP_CODE_BATCH_CLOSED: CapCode
CAP_CODE_UNKNOWN_XID: CapCode
CAP_CODE_UNKNOWN_LID: CapCode
CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION: CapCode

class AuthTags(_message.Message):
    __slots__ = ("auth_rr_tags", "trans_ids", "auth_ret_num")
    AUTH_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    AUTH_RET_NUM_FIELD_NUMBER: _ClassVar[int]
    auth_rr_tags: _common_pb2.RRTags
    trans_ids: _common_pb2.TransIDs
    auth_ret_num: int
    def __init__(self, auth_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., auth_ret_num: _Optional[int] = ...) -> None: ...

class CheckDigests(_message.Message):
    __slots__ = ("hoi_data", "hod2")
    HOI_DATA_FIELD_NUMBER: _ClassVar[int]
    HOD2_FIELD_NUMBER: _ClassVar[int]
    hoi_data: bytes
    hod2: bytes
    def __init__(self, hoi_data: _Optional[bytes] = ..., hod2: _Optional[bytes] = ...) -> None: ...

class AuthReqPayload(_message.Message):
    __slots__ = ("subsequent_auth_ind", "auth_req_amt", "card_suspect")
    SUBSEQUENT_AUTH_IND_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQ_AMT_FIELD_NUMBER: _ClassVar[int]
    CARD_SUSPECT_FIELD_NUMBER: _ClassVar[int]
    subsequent_auth_ind: bool
    auth_req_amt: _common_pb2.CurrencyAmount
    card_suspect: bool
    def __init__(self, subsequent_auth_ind: _Optional[bool] = ..., auth_req_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., card_suspect: _Optional[bool] = ...) -> None: ...

class SaleDetail(_message.Message):
    __slots__ = ("batch_id", "batch_sequence_num", "mer_order_num", "customer_reference_number")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQUENCE_NUM_FIELD_NUMBER: _ClassVar[int]
    MER_ORDER_NUM_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_REFERENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    batch_sequence_num: int
    mer_order_num: str
    customer_reference_number: str
    def __init__(self, batch_id: _Optional[str] = ..., batch_sequence_num: _Optional[int] = ..., mer_order_num: _Optional[str] = ..., customer_reference_number: _Optional[str] = ...) -> None: ...

class AuthReqData(_message.Message):
    __slots__ = ("content_type", "auth_tags", "check_digests", "auth_req_payload", "capture_now", "sale_detail", "m_thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUTH_TAGS_FIELD_NUMBER: _ClassVar[int]
    CHECK_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQ_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_NOW_FIELD_NUMBER: _ClassVar[int]
    SALE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    M_THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    auth_tags: AuthTags
    check_digests: CheckDigests
    auth_req_payload: AuthReqPayload
    capture_now: bool
    sale_detail: SaleDetail
    m_thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., auth_tags: _Optional[_Union[AuthTags, _Mapping]] = ..., check_digests: _Optional[_Union[CheckDigests, _Mapping]] = ..., auth_req_payload: _Optional[_Union[AuthReqPayload, _Mapping]] = ..., capture_now: _Optional[bool] = ..., sale_detail: _Optional[_Union[SaleDetail, _Mapping]] = ..., m_thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("header", "auth_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    auth_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., auth_req: _Optional[bytes] = ...) -> None: ...

class ResponseData(_message.Message):
    __slots__ = ("approval_code", "resp_reason", "card_type", "log_ref_id")
    APPROVAL_CODE_FIELD_NUMBER: _ClassVar[int]
    RESP_REASON_FIELD_NUMBER: _ClassVar[int]
    CARD_TYPE_FIELD_NUMBER: _ClassVar[int]
    LOG_REF_ID_FIELD_NUMBER: _ClassVar[int]
    approval_code: str
    resp_reason: RespReason
    card_type: str
    log_ref_id: str
    def __init__(self, approval_code: _Optional[str] = ..., resp_reason: _Optional[_Union[RespReason, str]] = ..., card_type: _Optional[str] = ..., log_ref_id: _Optional[str] = ...) -> None: ...

class AuthHeader(_message.Message):
    __slots__ = ("auth_amt", "auth_code", "response_data")
    AUTH_AMT_FIELD_NUMBER: _ClassVar[int]
    AUTH_CODE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_DATA_FIELD_NUMBER: _ClassVar[int]
    auth_amt: _common_pb2.CurrencyAmount
    auth_code: AuthCode
    response_data: ResponseData
    def __init__(self, auth_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., auth_code: _Optional[_Union[AuthCode, str]] = ..., response_data: _Optional[_Union[ResponseData, _Mapping]] = ...) -> None: ...

class CapResPayload(_message.Message):
    __slots__ = ("cap_code", "cap_amt", "batch_id", "batch_sequence_num")
    CAP_CODE_FIELD_NUMBER: _ClassVar[int]
    CAP_AMT_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQUENCE_NUM_FIELD_NUMBER: _ClassVar[int]
    cap_code: CapCode
    cap_amt: _common_pb2.CurrencyAmount
    batch_id: str
    batch_sequence_num: int
    def __init__(self, cap_code: _Optional[_Union[CapCode, str]] = ..., cap_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., batch_id: _Optional[str] = ..., batch_sequence_num: _Optional[int] = ...) -> None: ...

class AuthResPayload(_message.Message):
    __slots__ = ("auth_header", "cap_res_payload")
    AUTH_HEADER_FIELD_NUMBER: _ClassVar[int]
    CAP_RES_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    auth_header: AuthHeader
    cap_res_payload: CapResPayload
    def __init__(self, auth_header: _Optional[_Union[AuthHeader, _Mapping]] = ..., cap_res_payload: _Optional[_Union[CapResPayload, _Mapping]] = ...) -> None: ...

class AuthResData(_message.Message):
    __slots__ = ("content_type", "auth_tags", "merchant_cert_thumb", "request_digest", "auth_res_payload", "pe_thumb")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUTH_TAGS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    AUTH_RES_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PE_THUMB_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    auth_tags: AuthTags
    merchant_cert_thumb: bytes
    request_digest: bytes
    auth_res_payload: AuthResPayload
    pe_thumb: bytes
    def __init__(self, content_type: _Optional[str] = ..., auth_tags: _Optional[_Union[AuthTags, _Mapping]] = ..., merchant_cert_thumb: _Optional[bytes] = ..., request_digest: _Optional[bytes] = ..., auth_res_payload: _Optional[_Union[AuthResPayload, _Mapping]] = ..., pe_thumb: _Optional[bytes] = ...) -> None: ...

class AuthResBaggage(_message.Message):
    __slots__ = ("cap_token", "acq_card_msg")
    CAP_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACQ_CARD_MSG_FIELD_NUMBER: _ClassVar[int]
    cap_token: bytes
    acq_card_msg: bytes
    def __init__(self, cap_token: _Optional[bytes] = ..., acq_card_msg: _Optional[bytes] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("header", "auth_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    AUTH_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    auth_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., auth_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class CapTokenData(_message.Message):
    __slots__ = ("content_type", "xid", "auth_rrpid", "auth_amt", "merchant_id", "merchant_cert_thumb", "hold_id", "issued_unix_ms", "trans_ids_digest")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    XID_FIELD_NUMBER: _ClassVar[int]
    AUTH_RRPID_FIELD_NUMBER: _ClassVar[int]
    AUTH_AMT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    xid: bytes
    auth_rrpid: bytes
    auth_amt: _common_pb2.CurrencyAmount
    merchant_id: str
    merchant_cert_thumb: bytes
    hold_id: str
    issued_unix_ms: int
    trans_ids_digest: bytes
    def __init__(self, content_type: _Optional[str] = ..., xid: _Optional[bytes] = ..., auth_rrpid: _Optional[bytes] = ..., auth_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., merchant_id: _Optional[str] = ..., merchant_cert_thumb: _Optional[bytes] = ..., hold_id: _Optional[str] = ..., issued_unix_ms: _Optional[int] = ..., trans_ids_digest: _Optional[bytes] = ...) -> None: ...

class AuthRevReqData(_message.Message):
    __slots__ = ("content_type", "auth_rev_rr_tags", "trans_ids", "auth_rrpid", "auth_new_amt", "m_thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUTH_REV_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    AUTH_RRPID_FIELD_NUMBER: _ClassVar[int]
    AUTH_NEW_AMT_FIELD_NUMBER: _ClassVar[int]
    M_THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    auth_rev_rr_tags: _common_pb2.RRTags
    trans_ids: _common_pb2.TransIDs
    auth_rrpid: bytes
    auth_new_amt: _common_pb2.CurrencyAmount
    m_thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., auth_rev_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., auth_rrpid: _Optional[bytes] = ..., auth_new_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., m_thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class AuthReversalRequest(_message.Message):
    __slots__ = ("header", "auth_rev_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    AUTH_REV_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    auth_rev_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., auth_rev_req: _Optional[bytes] = ...) -> None: ...

class AuthRevResData(_message.Message):
    __slots__ = ("content_type", "auth_rev_rr_tags", "trans_ids", "merchant_cert_thumb", "request_digest", "auth_rev_code", "auth_new_amt", "pe_thumb")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUTH_REV_RR_TAGS_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    AUTH_REV_CODE_FIELD_NUMBER: _ClassVar[int]
    AUTH_NEW_AMT_FIELD_NUMBER: _ClassVar[int]
    PE_THUMB_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    auth_rev_rr_tags: _common_pb2.RRTags
    trans_ids: _common_pb2.TransIDs
    merchant_cert_thumb: bytes
    request_digest: bytes
    auth_rev_code: AuthRevCode
    auth_new_amt: _common_pb2.CurrencyAmount
    pe_thumb: bytes
    def __init__(self, content_type: _Optional[str] = ..., auth_rev_rr_tags: _Optional[_Union[_common_pb2.RRTags, _Mapping]] = ..., trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., merchant_cert_thumb: _Optional[bytes] = ..., request_digest: _Optional[bytes] = ..., auth_rev_code: _Optional[_Union[AuthRevCode, str]] = ..., auth_new_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., pe_thumb: _Optional[bytes] = ...) -> None: ...

class AuthRevResBaggage(_message.Message):
    __slots__ = ("cap_token_new",)
    CAP_TOKEN_NEW_FIELD_NUMBER: _ClassVar[int]
    cap_token_new: bytes
    def __init__(self, cap_token_new: _Optional[bytes] = ...) -> None: ...

class AuthReversalResponse(_message.Message):
    __slots__ = ("header", "auth_rev_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    AUTH_REV_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    auth_rev_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., auth_rev_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...
