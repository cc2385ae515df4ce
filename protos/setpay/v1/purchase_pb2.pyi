from setpay.v1 import authorization_pb2 as _authorization_pb2
from setpay.v1 import common_pb2 as _common_pb2
from setpay.v1 import crypto_pb2 as _crypto_pb2
from setpay.v1 import error_pb2 as _error_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompletionCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPLETION_CODE_UNSPECIFIED: _ClassVar[CompletionCode]
    COMPLETION_CODE_MEANINGLESS_RATIO: _ClassVar[CompletionCode]
    COMPLETION_CODE_ORDER_REJECTED: _ClassVar[CompletionCode]
    COMPLETION_CODE_ORDER_RECEIVED: _ClassVar[CompletionCode]
    COMPLETION_CODE_ORDER_NOT_RECEIVED: _ClassVar[CompletionCode]
    COMPLETION_CODE_AUTHORIZATION_PERFORMED: _ClassVar[CompletionCode]
    COMPLETION_CODE_CAPTURE_PERFORMED: _ClassVar[CompletionCode]
    COMPLETION_CODE_CREDIT_PERFORMED: _ClassVar[CompletionCode]
COMPLETION_CODE_UNSPECIFIED: CompletionCode
COMPLETION_CODE_MEANINGLESS_RATIO: CompletionCode
COMPLETION_CODE_ORDER_REJECTED: CompletionCode
COMPLETION_CODE_ORDER_RECEIVED: CompletionCode
COMPLETION_CODE_ORDER_NOT_RECEIVED: CompletionCode
COMPLETION_CODE_AUTHORIZATION_PERFORMED: CompletionCode
COMPLETION_CODE_CAPTURE_PERFORMED: CompletionCode
COMPLETION_CODE_CREDIT_PERFORMED: CompletionCode

class PInitRequest(_message.Message):
    __slots__ = ("header", "rrpid", "language", "lid_c", "lid_m", "chall_c", "brand_id", "bin", "thumbs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LID_C_FIELD_NUMBER: _ClassVar[int]
    LID_M_FIELD_NUMBER: _ClassVar[int]
    CHALL_C_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    rrpid: bytes
    language: str
    lid_c: bytes
    lid_m: bytes
    chall_c: bytes
    brand_id: str
    bin: str
    thumbs: _common_pb2.Thumbs
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., rrpid: _Optional[bytes] = ..., language: _Optional[str] = ..., lid_c: _Optional[bytes] = ..., lid_m: _Optional[bytes] = ..., chall_c: _Optional[bytes] = ..., brand_id: _Optional[str] = ..., bin: _Optional[str] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class PInitResData(_message.Message):
    __slots__ = ("content_type", "trans_ids", "rrpid", "chall_c", "chall_m", "pe_thumb", "thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    CHALL_C_FIELD_NUMBER: _ClassVar[int]
    CHALL_M_FIELD_NUMBER: _ClassVar[int]
    PE_THUMB_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    trans_ids: _common_pb2.TransIDs
    rrpid: bytes
    chall_c: bytes
    chall_m: bytes
    pe_thumb: bytes
    thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., rrpid: _Optional[bytes] = ..., chall_c: _Optional[bytes] = ..., chall_m: _Optional[bytes] = ..., pe_thumb: _Optional[bytes] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class PInitResponse(_message.Message):
    __slots__ = ("header", "p_init_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    P_INIT_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    p_init_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., p_init_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class OIData(_message.Message):
    __slots__ = ("content_type", "trans_ids", "rrpid", "chall_c", "hod", "od_salt", "chall_m", "brand_id", "bin")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    CHALL_C_FIELD_NUMBER: _ClassVar[int]
    HOD_FIELD_NUMBER: _ClassVar[int]
    OD_SALT_FIELD_NUMBER: _ClassVar[int]
    CHALL_M_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    trans_ids: _common_pb2.TransIDs
    rrpid: bytes
    chall_c: bytes
    hod: bytes
    od_salt: bytes
    chall_m: bytes
    brand_id: str
    bin: str
    def __init__(self, content_type: _Optional[str] = ..., trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., rrpid: _Optional[bytes] = ..., chall_c: _Optional[bytes] = ..., hod: _Optional[bytes] = ..., od_salt: _Optional[bytes] = ..., chall_m: _Optional[bytes] = ..., brand_id: _Optional[str] = ..., bin: _Optional[str] = ...) -> None: ...

class PIHead(_message.Message):
    __slots__ = ("content_type", "trans_ids", "hod", "purch_amt", "merchant_id", "merchant_sig_cert_thumb", "pe_thumb", "install_recur", "trans_stain", "sw_ident")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    HOD_FIELD_NUMBER: _ClassVar[int]
    PURCH_AMT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_SIG_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    PE_THUMB_FIELD_NUMBER: _ClassVar[int]
    INSTALL_RECUR_FIELD_NUMBER: _ClassVar[int]
    TRANS_STAIN_FIELD_NUMBER: _ClassVar[int]
    SW_IDENT_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    trans_ids: _common_pb2.TransIDs
    hod: bytes
    purch_amt: _common_pb2.CurrencyAmount
    merchant_id: str
    merchant_sig_cert_thumb: bytes
    pe_thumb: bytes
    install_recur: _common_pb2.InstallRecurData
    trans_stain: bytes
    sw_ident: str
    def __init__(self, content_type: _Optional[str] = ..., trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., hod: _Optional[bytes] = ..., purch_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., merchant_id: _Optional[str] = ..., merchant_sig_cert_thumb: _Optional[bytes] = ..., pe_thumb: _Optional[bytes] = ..., install_recur: _Optional[_Union[_common_pb2.InstallRecurData, _Mapping]] = ..., trans_stain: _Optional[bytes] = ..., sw_ident: _Optional[str] = ...) -> None: ...

class PANData(_message.Message):
    __slots__ = ("content_type", "pan", "card_expiry", "pan_secret", "ex_nonce", "padding")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    CARD_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    PAN_SECRET_FIELD_NUMBER: _ClassVar[int]
    EX_NONCE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    pan: str
    card_expiry: str
    pan_secret: bytes
    ex_nonce: bytes
    padding: bytes
    def __init__(self, content_type: _Optional[str] = ..., pan: _Optional[str] = ..., card_expiry: _Optional[str] = ..., pan_secret: _Optional[bytes] = ..., ex_nonce: _Optional[bytes] = ..., padding: _Optional[bytes] = ...) -> None: ...

class PITBE(_message.Message):
    __slots__ = ("content_type", "pi_head", "dd_oi_data", "dd_pan_data")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PI_HEAD_FIELD_NUMBER: _ClassVar[int]
    DD_OI_DATA_FIELD_NUMBER: _ClassVar[int]
    DD_PAN_DATA_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    pi_head: bytes
    dd_oi_data: bytes
    dd_pan_data: bytes
    def __init__(self, content_type: _Optional[str] = ..., pi_head: _Optional[bytes] = ..., dd_oi_data: _Optional[bytes] = ..., dd_pan_data: _Optional[bytes] = ...) -> None: ...

class PITBS(_message.Message):
    __slots__ = ("content_type", "dd_pi_data", "dd_oi_data")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DD_PI_DATA_FIELD_NUMBER: _ClassVar[int]
    DD_OI_DATA_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    dd_pi_data: bytes
    dd_oi_data: bytes
    def __init__(self, content_type: _Optional[str] = ..., dd_pi_data: _Optional[bytes] = ..., dd_oi_data: _Optional[bytes] = ...) -> None: ...

class PIDualSigned(_message.Message):
    __slots__ = ("pi_signature", "ex_pi", "pi_tbs", "cardholder_certs")
    PI_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    EX_PI_FIELD_NUMBER: _ClassVar[int]
    PI_TBS_FIELD_NUMBER: _ClassVar[int]
    CARDHOLDER_CERTS_FIELD_NUMBER: _ClassVar[int]
    pi_signature: _crypto_pb2.DetachedSignature
    ex_pi: _crypto_pb2.Sealed
    pi_tbs: bytes
    cardholder_certs: _crypto_pb2.CertBundle
    def __init__(self, pi_signature: _Optional[_Union[_crypto_pb2.DetachedSignature, _Mapping]] = ..., ex_pi: _Optional[_Union[_crypto_pb2.Sealed, _Mapping]] = ..., pi_tbs: _Optional[bytes] = ..., cardholder_certs: _Optional[_Union[_crypto_pb2.CertBundle, _Mapping]] = ...) -> None: ...

class OIDualSigned(_message.Message):
    __slots__ = ("oi_data", "dd_pi_data")
    OI_DATA_FIELD_NUMBER: _ClassVar[int]
    DD_PI_DATA_FIELD_NUMBER: _ClassVar[int]
    oi_data: bytes
    dd_pi_data: bytes
    def __init__(self, oi_data: _Optional[bytes] = ..., dd_pi_data: _Optional[bytes] = ...) -> None: ...

class PReqDualSigned(_message.Message):
    __slots__ = ("pi_dual_signed", "oi_dual_signed")
    PI_DUAL_SIGNED_FIELD_NUMBER: _ClassVar[int]
    OI_DUAL_SIGNED_FIELD_NUMBER: _ClassVar[int]
    pi_dual_signed: bytes
    oi_dual_signed: bytes
    def __init__(self, pi_dual_signed: _Optional[bytes] = ..., oi_dual_signed: _Optional[bytes] = ...) -> None: ...

class PurchaseRequest(_message.Message):
    __slots__ = ("header", "p_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    P_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    p_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., p_req: _Optional[bytes] = ...) -> None: ...

class PResPayload(_message.Message):
    __slots__ = ("completion_code", "auth_code", "auth_amt", "captured_amt", "credited_amt", "acq_card_msg")
    COMPLETION_CODE_FIELD_NUMBER: _ClassVar[int]
    AUTH_CODE_FIELD_NUMBER: _ClassVar[int]
    AUTH_AMT_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AMT_FIELD_NUMBER: _ClassVar[int]
    CREDITED_AMT_FIELD_NUMBER: _ClassVar[int]
    ACQ_CARD_MSG_FIELD_NUMBER: _ClassVar[int]
    completion_code: CompletionCode
    auth_code: _authorization_pb2.AuthCode
    auth_amt: _common_pb2.CurrencyAmount
    captured_amt: _common_pb2.CurrencyAmount
    credited_amt: _common_pb2.CurrencyAmount
    acq_card_msg: bytes
    def __init__(self, completion_code: _Optional[_Union[CompletionCode, str]] = ..., auth_code: _Optional[_Union[_authorization_pb2.AuthCode, str]] = ..., auth_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., captured_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., credited_amt: _Optional[_Union[_common_pb2.CurrencyAmount, _Mapping]] = ..., acq_card_msg: _Optional[bytes] = ...) -> None: ...

class PResData(_message.Message):
    __slots__ = ("content_type", "trans_ids", "rrpid", "chall_c", "payloads")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    CHALL_C_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    trans_ids: _common_pb2.TransIDs
    rrpid: bytes
    chall_c: bytes
    payloads: _containers.RepeatedCompositeFieldContainer[PResPayload]
    def __init__(self, content_type: _Optional[str] = ..., trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., rrpid: _Optional[bytes] = ..., chall_c: _Optional[bytes] = ..., payloads: _Optional[_Iterable[_Union[PResPayload, _Mapping]]] = ...) -> None: ...

class PurchaseResponse(_message.Message):
    __slots__ = ("header", "p_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    P_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    p_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., p_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class InqReqData(_message.Message):
    __slots__ = ("content_type", "trans_ids", "rrpid", "chall_c2")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRANS_IDS_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    CHALL_C2_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    trans_ids: _common_pb2.TransIDs
    rrpid: bytes
    chall_c2: bytes
    def __init__(self, content_type: _Optional[str] = ..., trans_ids: _Optional[_Union[_common_pb2.TransIDs, _Mapping]] = ..., rrpid: _Optional[bytes] = ..., chall_c2: _Optional[bytes] = ...) -> None: ...

class InquiryRequest(_message.Message):
    __slots__ = ("header", "inq_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INQ_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    inq_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., inq_req: _Optional[bytes] = ...) -> None: ...

class InquiryResponse(_message.Message):
    __slots__ = ("header", "inq_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INQ_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    inq_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., inq_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...
