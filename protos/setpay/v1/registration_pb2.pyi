from setpay.v1 import common_pb2 as _common_pb2
from setpay.v1 import error_pb2 as _error_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_TYPE_UNSPECIFIED: _ClassVar[RequestType]
    REQUEST_TYPE_CARD_INITIAL_SIG: _ClassVar[RequestType]
    REQUEST_TYPE_MER_INITIAL_BOTH: _ClassVar[RequestType]
    REQUEST_TYPE_PGWY_INITIAL_BOTH: _ClassVar[RequestType]
    REQUEST_TYPE_CARD_RENEWAL_SIG: _ClassVar[RequestType]
    REQUEST_TYPE_MER_RENEWAL_BOTH: _ClassVar[RequestType]
    REQUEST_TYPE_PGWY_RENEWAL_BOTH: _ClassVar[RequestType]

class CertificateType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CERTIFICATE_TYPE_UNSPECIFIED: _ClassVar[CertificateType]
    CERTIFICATE_TYPE_CARDHOLDER: _ClassVar[CertificateType]
    CERTIFICATE_TYPE_MERCHANT: _ClassVar[CertificateType]
    CERTIFICATE_TYPE_PAYMENT_GATEWAY: _ClassVar[CertificateType]
    CERTIFICATE_TYPE_CARDHOLDER_CA: _ClassVar[CertificateType]
    CERTIFICATE_TYPE_MERCHANT_CA: _ClassVar[CertificateType]
    CERTIFICATE_TYPE_PAYMENT_GATEWAY_CA: _ClassVar[CertificateType]
    CERTIFICATE_TYPE_BRAND_ROOT: _ClassVar[CertificateType]

class CertStatusCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CERT_STATUS_CODE_UNSPECIFIED: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_REQUEST_COMPLETE: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_INVALID_LANGUAGE: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_INVALID_BIN: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_SIG_VALIDATION_FAIL: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_DECRYPTION_ERROR: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_REQUEST_IN_PROGRESS: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_REJECTED_BY_ISSUER: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_REQUEST_PENDED: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_REJECTED_BY_AGENT: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_CHALLENGE_MISMATCH: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED: _ClassVar[CertStatusCode]
    CERT_STATUS_CODE_UNKNOWN_ACCOUNT: _ClassVar[CertStatusCode]
REQUEST_TYPE_UNSPECIFIED: RequestType
REQUEST_TYPE_CARD_INITIAL_SIG: RequestType
REQUEST_TYPE_MER_INITIAL_BOTH: RequestType
REQUEST_TYPE_PGWY_INITIAL_BOTH: RequestType
REQUEST_TYPE_CARD_RENEWAL_SIG: RequestType
REQUEST_TYPE_MER_RENEWAL_BOTH: RequestType
REQUEST_TYPE_PGWY_RENEWAL_BOTH: RequestType
CERTIFICATE_TYPE_UNSPECIFIED: CertificateType
CERTIFICATE_TYPE_CARDHOLDER: CertificateType
CERTIFICATE_TYPE_MERCHANT: CertificateType
CERTIFICATE_TYPE_PAYMENT_GATEWAY: CertificateType
CERTIFICATE_TYPE_CARDHOLDER_CA: CertificateType
CERTIFICATE_TYPE_MERCHANT_CA: CertificateType
CERTIFICATE_TYPE_PAYMENT_GATEWAY_CA: CertificateType
CERTIFICATE_TYPE_BRAND_ROOT: CertificateType
CERT_STATUS_CODE_UNSPECIFIED: CertStatusCode
CERT_STATUS_CODE_REQUEST_COMPLETE: CertStatusCode
CERT_STATUS_CODE_INVALID_LANGUAGE: CertStatusCode
CERT_STATUS_CODE_INVALID_BIN: CertStatusCode
CERT_STATUS_CODE_SIG_VALIDATION_FAIL: CertStatusCode
CERT_STATUS_CODE_DECRYPTION_ERROR: CertStatusCode
CERT_STATUS_CODE_REQUEST_IN_PROGRESS: CertStatusCode
CERT_STATUS_CODE_REJECTED_BY_ISSUER: CertStatusCode
CERT_STATUS_CODE_REQUEST_PENDED: CertStatusCode
CERT_STATUS_CODE_REJECTED_BY_AGENT: CertStatusCode
CERT_STATUS_CODE_CHALLENGE_MISMATCH: CertStatusCode
CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED: CertStatusCode
CERT_STATUS_CODE_UNKNOWN_ACCOUNT: CertStatusCode

class IDData(_message.Message):
    __slots__ = ("merchant", "acquirer")
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    ACQUIRER_FIELD_NUMBER: _ClassVar[int]
    merchant: MerchantAcquirerID
    acquirer: AcquirerID
    def __init__(self, merchant: _Optional[_Union[MerchantAcquirerID, _Mapping]] = ..., acquirer: _Optional[_Union[AcquirerID, _Mapping]] = ...) -> None: ...

class MerchantAcquirerID(_message.Message):
    __slots__ = ("merchant_bin", "merchant_id", "merchant_name")
    MERCHANT_BIN_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    merchant_bin: str
    merchant_id: str
    merchant_name: str
    def __init__(self, merchant_bin: _Optional[str] = ..., merchant_id: _Optional[str] = ..., merchant_name: _Optional[str] = ...) -> None: ...

class AcquirerID(_message.Message):
    __slots__ = ("acquirer_bin", "acquirer_business_id")
    ACQUIRER_BIN_FIELD_NUMBER: _ClassVar[int]
    ACQUIRER_BUSINESS_ID_FIELD_NUMBER: _ClassVar[int]
    acquirer_bin: str
    acquirer_business_id: str
    def __init__(self, acquirer_bin: _Optional[str] = ..., acquirer_business_id: _Optional[str] = ...) -> None: ...

class RegField(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class RegFormData(_message.Message):
    __slots__ = ("reg_form_id", "reg_template", "policy_text")
    REG_FORM_ID_FIELD_NUMBER: _ClassVar[int]
    REG_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_TEXT_FIELD_NUMBER: _ClassVar[int]
    reg_form_id: str
    reg_template: _containers.RepeatedCompositeFieldContainer[RegField]
    policy_text: str
    def __init__(self, reg_form_id: _Optional[str] = ..., reg_template: _Optional[_Iterable[_Union[RegField, _Mapping]]] = ..., policy_text: _Optional[str] = ...) -> None: ...

class CardCInitRequest(_message.Message):
    __slots__ = ("header", "rrpid", "lid_ee", "chall_ee", "brand_id", "thumbs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    rrpid: bytes
    lid_ee: bytes
    chall_ee: bytes
    brand_id: str
    thumbs: _common_pb2.Thumbs
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee: _Optional[bytes] = ..., brand_id: _Optional[str] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class CardCInitResTBS(_message.Message):
    __slots__ = ("content_type", "rrpid", "lid_ee", "chall_ee", "lid_ca", "cae_thumb", "thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE_FIELD_NUMBER: _ClassVar[int]
    LID_CA_FIELD_NUMBER: _ClassVar[int]
    CAE_THUMB_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    rrpid: bytes
    lid_ee: bytes
    chall_ee: bytes
    lid_ca: bytes
    cae_thumb: bytes
    thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee: _Optional[bytes] = ..., lid_ca: _Optional[bytes] = ..., cae_thumb: _Optional[bytes] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class CardCInitResponse(_message.Message):
    __slots__ = ("header", "card_c_init_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CARD_C_INIT_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    card_c_init_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., card_c_init_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class RegFormReqTBE(_message.Message):
    __slots__ = ("content_type", "rrpid", "lid_ee", "chall_ee2", "lid_ca", "request_type", "language", "thumbs", "dd_extra")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE2_FIELD_NUMBER: _ClassVar[int]
    LID_CA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    DD_EXTRA_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    rrpid: bytes
    lid_ee: bytes
    chall_ee2: bytes
    lid_ca: bytes
    request_type: RequestType
    language: str
    thumbs: _common_pb2.Thumbs
    dd_extra: bytes
    def __init__(self, content_type: _Optional[str] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee2: _Optional[bytes] = ..., lid_ca: _Optional[bytes] = ..., request_type: _Optional[_Union[RequestType, str]] = ..., language: _Optional[str] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ..., dd_extra: _Optional[bytes] = ...) -> None: ...

class PANOnly(_message.Message):
    __slots__ = ("content_type", "pan", "ex_nonce")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    EX_NONCE_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    pan: str
    ex_nonce: bytes
    def __init__(self, content_type: _Optional[str] = ..., pan: _Optional[str] = ..., ex_nonce: _Optional[bytes] = ...) -> None: ...

class RegFormRequest(_message.Message):
    __slots__ = ("header", "reg_form_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    REG_FORM_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    reg_form_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., reg_form_req: _Optional[bytes] = ...) -> None: ...

class RegFormResTBS(_message.Message):
    __slots__ = ("content_type", "rrpid", "lid_ee", "chall_ee2", "lid_ca", "chall_ca", "cae_thumb", "request_type", "reg_form", "referral", "thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE2_FIELD_NUMBER: _ClassVar[int]
    LID_CA_FIELD_NUMBER: _ClassVar[int]
    CHALL_CA_FIELD_NUMBER: _ClassVar[int]
    CAE_THUMB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    REG_FORM_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    rrpid: bytes
    lid_ee: bytes
    chall_ee2: bytes
    lid_ca: bytes
    chall_ca: bytes
    cae_thumb: bytes
    request_type: RequestType
    reg_form: RegFormData
    referral: str
    thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee2: _Optional[bytes] = ..., lid_ca: _Optional[bytes] = ..., chall_ca: _Optional[bytes] = ..., cae_thumb: _Optional[bytes] = ..., request_type: _Optional[_Union[RequestType, str]] = ..., reg_form: _Optional[_Union[RegFormData, _Mapping]] = ..., referral: _Optional[str] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class RegFormResponse(_message.Message):
    __slots__ = ("header", "reg_form_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    REG_FORM_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    reg_form_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., reg_form_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class MeAqCInitRequest(_message.Message):
    __slots__ = ("header", "rrpid", "lid_ee", "chall_ee", "request_type", "id_data", "brand_id", "language", "thumbs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_DATA_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    rrpid: bytes
    lid_ee: bytes
    chall_ee: bytes
    request_type: RequestType
    id_data: IDData
    brand_id: str
    language: str
    thumbs: _common_pb2.Thumbs
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee: _Optional[bytes] = ..., request_type: _Optional[_Union[RequestType, str]] = ..., id_data: _Optional[_Union[IDData, _Mapping]] = ..., brand_id: _Optional[str] = ..., language: _Optional[str] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class MeAqCInitResTBS(_message.Message):
    __slots__ = ("content_type", "rrpid", "lid_ee", "chall_ee", "lid_ca", "chall_ca", "cae_thumb", "request_type", "reg_form", "thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE_FIELD_NUMBER: _ClassVar[int]
    LID_CA_FIELD_NUMBER: _ClassVar[int]
    CHALL_CA_FIELD_NUMBER: _ClassVar[int]
    CAE_THUMB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    REG_FORM_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    rrpid: bytes
    lid_ee: bytes
    chall_ee: bytes
    lid_ca: bytes
    chall_ca: bytes
    cae_thumb: bytes
    request_type: RequestType
    reg_form: RegFormData
    thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee: _Optional[bytes] = ..., lid_ca: _Optional[bytes] = ..., chall_ca: _Optional[bytes] = ..., cae_thumb: _Optional[bytes] = ..., request_type: _Optional[_Union[RequestType, str]] = ..., reg_form: _Optional[_Union[RegFormData, _Mapping]] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class MeAqCInitResponse(_message.Message):
    __slots__ = ("header", "me_aq_c_init_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ME_AQ_C_INIT_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    me_aq_c_init_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., me_aq_c_init_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class CertReqData(_message.Message):
    __slots__ = ("content_type", "rrpid", "lid_ee", "chall_ee3", "lid_ca", "chall_ca", "request_type", "request_date_unix_ms", "id_data", "reg_form_id", "reg_form", "back_key", "public_key_sig", "public_key_enc", "ee_thumb", "thumbs", "dd_extra", "public_key_enc_kem", "brand_id")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE3_FIELD_NUMBER: _ClassVar[int]
    LID_CA_FIELD_NUMBER: _ClassVar[int]
    CHALL_CA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ID_DATA_FIELD_NUMBER: _ClassVar[int]
    REG_FORM_ID_FIELD_NUMBER: _ClassVar[int]
    REG_FORM_FIELD_NUMBER: _ClassVar[int]
    BACK_KEY_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_SIG_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_ENC_FIELD_NUMBER: _ClassVar[int]
    EE_THUMB_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    DD_EXTRA_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_ENC_KEM_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    rrpid: bytes
    lid_ee: bytes
    chall_ee3: bytes
    lid_ca: bytes
    chall_ca: bytes
    request_type: RequestType
    request_date_unix_ms: int
    id_data: IDData
    reg_form_id: str
    reg_form: _containers.RepeatedCompositeFieldContainer[RegField]
    back_key: bytes
    public_key_sig: bytes
    public_key_enc: bytes
    ee_thumb: bytes
    thumbs: _common_pb2.Thumbs
    dd_extra: bytes
    public_key_enc_kem: str
    brand_id: str
    def __init__(self, content_type: _Optional[str] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee3: _Optional[bytes] = ..., lid_ca: _Optional[bytes] = ..., chall_ca: _Optional[bytes] = ..., request_type: _Optional[_Union[RequestType, str]] = ..., request_date_unix_ms: _Optional[int] = ..., id_data: _Optional[_Union[IDData, _Mapping]] = ..., reg_form_id: _Optional[str] = ..., reg_form: _Optional[_Iterable[_Union[RegField, _Mapping]]] = ..., back_key: _Optional[bytes] = ..., public_key_sig: _Optional[bytes] = ..., public_key_enc: _Optional[bytes] = ..., ee_thumb: _Optional[bytes] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ..., dd_extra: _Optional[bytes] = ..., public_key_enc_kem: _Optional[str] = ..., brand_id: _Optional[str] = ...) -> None: ...

class PANData0(_message.Message):
    __slots__ = ("content_type", "pan", "card_expiry", "card_secret", "ex_nonce")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    CARD_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    CARD_SECRET_FIELD_NUMBER: _ClassVar[int]
    EX_NONCE_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    pan: str
    card_expiry: str
    card_secret: bytes
    ex_nonce: bytes
    def __init__(self, content_type: _Optional[str] = ..., pan: _Optional[str] = ..., card_expiry: _Optional[str] = ..., card_secret: _Optional[bytes] = ..., ex_nonce: _Optional[bytes] = ...) -> None: ...

class AcctData(_message.Message):
    __slots__ = ("content_type", "acct_identification", "ex_nonce")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCT_IDENTIFICATION_FIELD_NUMBER: _ClassVar[int]
    EX_NONCE_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    acct_identification: str
    ex_nonce: bytes
    def __init__(self, content_type: _Optional[str] = ..., acct_identification: _Optional[str] = ..., ex_nonce: _Optional[bytes] = ...) -> None: ...

class CertRequest(_message.Message):
    __slots__ = ("header", "cert_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CERT_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cert_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cert_req: _Optional[bytes] = ...) -> None: ...

class CertStatus(_message.Message):
    __slots__ = ("cert_status_code", "nonce_cca", "ee_message")
    CERT_STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    NONCE_CCA_FIELD_NUMBER: _ClassVar[int]
    EE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    cert_status_code: CertStatusCode
    nonce_cca: bytes
    ee_message: str
    def __init__(self, cert_status_code: _Optional[_Union[CertStatusCode, str]] = ..., nonce_cca: _Optional[bytes] = ..., ee_message: _Optional[str] = ...) -> None: ...

class CertResData(_message.Message):
    __slots__ = ("content_type", "rrpid", "lid_ee", "chall_ee3", "lid_ca", "cert_status", "cert_thumbs", "thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE3_FIELD_NUMBER: _ClassVar[int]
    LID_CA_FIELD_NUMBER: _ClassVar[int]
    CERT_STATUS_FIELD_NUMBER: _ClassVar[int]
    CERT_THUMBS_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    rrpid: bytes
    lid_ee: bytes
    chall_ee3: bytes
    lid_ca: bytes
    cert_status: CertStatus
    cert_thumbs: _containers.RepeatedScalarFieldContainer[bytes]
    thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee3: _Optional[bytes] = ..., lid_ca: _Optional[bytes] = ..., cert_status: _Optional[_Union[CertStatus, _Mapping]] = ..., cert_thumbs: _Optional[_Iterable[bytes]] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class CertResponse(_message.Message):
    __slots__ = ("header", "cert_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CERT_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cert_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cert_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class CertInqReqTBS(_message.Message):
    __slots__ = ("content_type", "rrpid", "lid_ee", "chall_ee3", "lid_ca", "thumbs")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    LID_EE_FIELD_NUMBER: _ClassVar[int]
    CHALL_EE3_FIELD_NUMBER: _ClassVar[int]
    LID_CA_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    rrpid: bytes
    lid_ee: bytes
    chall_ee3: bytes
    lid_ca: bytes
    thumbs: _common_pb2.Thumbs
    def __init__(self, content_type: _Optional[str] = ..., rrpid: _Optional[bytes] = ..., lid_ee: _Optional[bytes] = ..., chall_ee3: _Optional[bytes] = ..., lid_ca: _Optional[bytes] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class CertInqRequest(_message.Message):
    __slots__ = ("header", "cert_inq_req")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CERT_INQ_REQ_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cert_inq_req: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cert_inq_req: _Optional[bytes] = ...) -> None: ...

class CertInqResponse(_message.Message):
    __slots__ = ("header", "cert_res", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CERT_RES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    cert_res: bytes
    error: _error_pb2.SetError
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., cert_res: _Optional[bytes] = ..., error: _Optional[_Union[_error_pb2.SetError, _Mapping]] = ...) -> None: ...

class CRLIdentifier(_message.Message):
    __slots__ = ("issuer_thumb", "crl_number", "crl_thumb")
    ISSUER_THUMB_FIELD_NUMBER: _ClassVar[int]
    CRL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CRL_THUMB_FIELD_NUMBER: _ClassVar[int]
    issuer_thumb: bytes
    crl_number: int
    crl_thumb: bytes
    def __init__(self, issuer_thumb: _Optional[bytes] = ..., crl_number: _Optional[int] = ..., crl_thumb: _Optional[bytes] = ...) -> None: ...

class BrandCRLIdentifierTBS(_message.Message):
    __slots__ = ("content_type", "brand_id", "sequence_num", "not_before_unix_ms", "not_after_unix_ms", "crls")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUM_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CRLS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    brand_id: str
    sequence_num: int
    not_before_unix_ms: int
    not_after_unix_ms: int
    crls: _containers.RepeatedCompositeFieldContainer[CRLIdentifier]
    def __init__(self, content_type: _Optional[str] = ..., brand_id: _Optional[str] = ..., sequence_num: _Optional[int] = ..., not_before_unix_ms: _Optional[int] = ..., not_after_unix_ms: _Optional[int] = ..., crls: _Optional[_Iterable[_Union[CRLIdentifier, _Mapping]]] = ...) -> None: ...

class GetBrandCRLIdentifierRequest(_message.Message):
    __slots__ = ("header", "brand_id", "thumbs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    brand_id: str
    thumbs: _common_pb2.Thumbs
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., brand_id: _Optional[str] = ..., thumbs: _Optional[_Union[_common_pb2.Thumbs, _Mapping]] = ...) -> None: ...

class GetBrandCRLIdentifierResponse(_message.Message):
    __slots__ = ("header", "brand_crl_identifier", "crls")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BRAND_CRL_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CRLS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    brand_crl_identifier: bytes
    crls: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., brand_crl_identifier: _Optional[bytes] = ..., crls: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetCertificatesRequest(_message.Message):
    __slots__ = ("header", "thumbs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    thumbs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., thumbs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetCertificatesResponse(_message.Message):
    __slots__ = ("header", "certificates")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.Header
    certificates: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, header: _Optional[_Union[_common_pb2.Header, _Mapping]] = ..., certificates: _Optional[_Iterable[bytes]] = ...) -> None: ...
