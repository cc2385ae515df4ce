from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_UNSPECIFIED_FAILURE: _ClassVar[ErrorCode]
    ERROR_CODE_MESSAGE_NOT_SUPPORTED: _ClassVar[ErrorCode]
    ERROR_CODE_DECODING_FAILURE: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_CERTIFICATE: _ClassVar[ErrorCode]
    ERROR_CODE_EXPIRED_CERTIFICATE: _ClassVar[ErrorCode]
    ERROR_CODE_REVOKED_CERTIFICATE: _ClassVar[ErrorCode]
    ERROR_CODE_MISSING_CERTIFICATE: _ClassVar[ErrorCode]
    ERROR_CODE_SIGNATURE_FAILURE: _ClassVar[ErrorCode]
    ERROR_CODE_BAD_MESSAGE_HEADER: _ClassVar[ErrorCode]
    ERROR_CODE_WRAPPER_MSG_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_VERSION_TOO_OLD: _ClassVar[ErrorCode]
    ERROR_CODE_VERSION_TOO_NEW: _ClassVar[ErrorCode]
    ERROR_CODE_UNRECOGNIZED_EXTENSION: _ClassVar[ErrorCode]
    ERROR_CODE_MESSAGE_TOO_BIG: _ClassVar[ErrorCode]
    ERROR_CODE_SIGNATURE_REQUIRED: _ClassVar[ErrorCode]
    ERROR_CODE_MESSAGE_TOO_OLD: _ClassVar[ErrorCode]
    ERROR_CODE_MESSAGE_TOO_NEW: _ClassVar[ErrorCode]
    ERROR_CODE_THUMBS_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_RRPID: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_XID: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_LID: _ClassVar[ErrorCode]
    ERROR_CODE_CHALLENGE_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_DECRYPTION_FAILURE: _ClassVar[ErrorCode]
    ERROR_CODE_WRONG_RECIPIENT: _ClassVar[ErrorCode]
    ERROR_CODE_DIGEST_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_PI_PREVIOUSLY_USED: _ClassVar[ErrorCode]
    ERROR_CODE_RRPID_REUSED: _ClassVar[ErrorCode]
    ERROR_CODE_MERCHANT_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_ACCOUNT_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_ALGORITHM_NOT_ALLOWED: _ClassVar[ErrorCode]
    ERROR_CODE_WRONG_CERTIFICATE_ROLE: _ClassVar[ErrorCode]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_UNSPECIFIED_FAILURE: ErrorCode
ERROR_CODE_MESSAGE_NOT_SUPPORTED: ErrorCode
ERROR_CODE_DECODING_FAILURE: ErrorCode
ERROR_CODE_INVALID_CERTIFICATE: ErrorCode
ERROR_CODE_EXPIRED_CERTIFICATE: ErrorCode
ERROR_CODE_REVOKED_CERTIFICATE: ErrorCode
ERROR_CODE_MISSING_CERTIFICATE: ErrorCode
ERROR_CODE_SIGNATURE_FAILURE: ErrorCode
ERROR_CODE_BAD_MESSAGE_HEADER: ErrorCode
ERROR_CODE_WRAPPER_MSG_MISMATCH: ErrorCode
ERROR_CODE_VERSION_TOO_OLD: ErrorCode
ERROR_CODE_VERSION_TOO_NEW: ErrorCode
ERROR_CODE_UNRECOGNIZED_EXTENSION: ErrorCode
ERROR_CODE_MESSAGE_TOO_BIG: ErrorCode
ERROR_CODE_SIGNATURE_REQUIRED: ErrorCode
ERROR_CODE_MESSAGE_TOO_OLD: ErrorCode
ERROR_CODE_MESSAGE_TOO_NEW: ErrorCode
ERROR_CODE_THUMBS_MISMATCH: ErrorCode
ERROR_CODE_UNKNOWN_RRPID: ErrorCode
ERROR_CODE_UNKNOWN_XID: ErrorCode
ERROR_CODE_UNKNOWN_LID: ErrorCode
ERROR_CODE_CHALLENGE_MISMATCH: ErrorCode
ERROR_CODE_DECRYPTION_FAILURE: ErrorCode
ERROR_CODE_WRONG_RECIPIENT: ErrorCode
ERROR_CODE_DIGEST_MISMATCH: ErrorCode
ERROR_CODE_PI_PREVIOUSLY_USED: ErrorCode
ERROR_CODE_RRPID_REUSED: ErrorCode
ERROR_CODE_MERCHANT_MISMATCH: ErrorCode
ERROR_CODE_ACCOUNT_MISMATCH: ErrorCode
ERROR_CODE_ALGORITHM_NOT_ALLOWED: ErrorCode
ERROR_CODE_WRONG_CERTIFICATE_ROLE: ErrorCode

class ErrorTBS(_message.Message):
    __slots__ = ("content_type", "error_code", "error_nonce", "error_thumb", "rrpid", "bad_message_digest", "error_msg", "date_unix_ms")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_NONCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_THUMB_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    BAD_MESSAGE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ERROR_MSG_FIELD_NUMBER: _ClassVar[int]
    DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    error_code: ErrorCode
    error_nonce: bytes
    error_thumb: bytes
    rrpid: bytes
    bad_message_digest: bytes
    error_msg: str
    date_unix_ms: int
    def __init__(self, content_type: _Optional[str] = ..., error_code: _Optional[_Union[ErrorCode, str]] = ..., error_nonce: _Optional[bytes] = ..., error_thumb: _Optional[bytes] = ..., rrpid: _Optional[bytes] = ..., bad_message_digest: _Optional[bytes] = ..., error_msg: _Optional[str] = ..., date_unix_ms: _Optional[int] = ...) -> None: ...

class SetError(_message.Message):
    __slots__ = ("signed_error", "unsigned_error")
    SIGNED_ERROR_FIELD_NUMBER: _ClassVar[int]
    UNSIGNED_ERROR_FIELD_NUMBER: _ClassVar[int]
    signed_error: bytes
    unsigned_error: ErrorTBS
    def __init__(self, signed_error: _Optional[bytes] = ..., unsigned_error: _Optional[_Union[ErrorTBS, _Mapping]] = ...) -> None: ...
