from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CurrencyAmount(_message.Message):
    __slots__ = ("currency", "amount", "exp10")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EXP10_FIELD_NUMBER: _ClassVar[int]
    currency: int
    amount: int
    exp10: int
    def __init__(self, currency: _Optional[int] = ..., amount: _Optional[int] = ..., exp10: _Optional[int] = ...) -> None: ...

class TransIDs(_message.Message):
    __slots__ = ("lid_c", "lid_m", "xid", "preq_date_unix_ms", "pay_sys_id", "language")
    LID_C_FIELD_NUMBER: _ClassVar[int]
    LID_M_FIELD_NUMBER: _ClassVar[int]
    XID_FIELD_NUMBER: _ClassVar[int]
    PREQ_DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    PAY_SYS_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    lid_c: bytes
    lid_m: bytes
    xid: bytes
    preq_date_unix_ms: int
    pay_sys_id: str
    language: str
    def __init__(self, lid_c: _Optional[bytes] = ..., lid_m: _Optional[bytes] = ..., xid: _Optional[bytes] = ..., preq_date_unix_ms: _Optional[int] = ..., pay_sys_id: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class MerTermIDs(_message.Message):
    __slots__ = ("merchant_id", "terminal_id", "agent_num", "chain_num", "store_num")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_NUM_FIELD_NUMBER: _ClassVar[int]
    CHAIN_NUM_FIELD_NUMBER: _ClassVar[int]
    STORE_NUM_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    terminal_id: str
    agent_num: str
    chain_num: str
    store_num: str
    def __init__(self, merchant_id: _Optional[str] = ..., terminal_id: _Optional[str] = ..., agent_num: _Optional[str] = ..., chain_num: _Optional[str] = ..., store_num: _Optional[str] = ...) -> None: ...

class RRTags(_message.Message):
    __slots__ = ("rrpid", "mer_term_ids", "date_unix_ms", "response_cert_thumb", "recipient_cert_thumb")
    RRPID_FIELD_NUMBER: _ClassVar[int]
    MER_TERM_IDS_FIELD_NUMBER: _ClassVar[int]
    DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    rrpid: bytes
    mer_term_ids: MerTermIDs
    date_unix_ms: int
    response_cert_thumb: bytes
    recipient_cert_thumb: bytes
    def __init__(self, rrpid: _Optional[bytes] = ..., mer_term_ids: _Optional[_Union[MerTermIDs, _Mapping]] = ..., date_unix_ms: _Optional[int] = ..., response_cert_thumb: _Optional[bytes] = ..., recipient_cert_thumb: _Optional[bytes] = ...) -> None: ...

class Thumbs(_message.Message):
    __slots__ = ("thumbs",)
    THUMBS_FIELD_NUMBER: _ClassVar[int]
    thumbs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, thumbs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class InstallRecurData(_message.Message):
    __slots__ = ("install_total_trans", "recurring")
    class Recurring(_message.Message):
        __slots__ = ("frequency_days", "expiry_unix_ms")
        FREQUENCY_DAYS_FIELD_NUMBER: _ClassVar[int]
        EXPIRY_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
        frequency_days: int
        expiry_unix_ms: int
        def __init__(self, frequency_days: _Optional[int] = ..., expiry_unix_ms: _Optional[int] = ...) -> None: ...
    INSTALL_TOTAL_TRANS_FIELD_NUMBER: _ClassVar[int]
    RECURRING_FIELD_NUMBER: _ClassVar[int]
    install_total_trans: int
    recurring: InstallRecurData.Recurring
    def __init__(self, install_total_trans: _Optional[int] = ..., recurring: _Optional[_Union[InstallRecurData.Recurring, _Mapping]] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("version", "date_unix_ms", "lid_c", "lid_m", "xid", "rrpid", "sw_ident")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LID_C_FIELD_NUMBER: _ClassVar[int]
    LID_M_FIELD_NUMBER: _ClassVar[int]
    XID_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    SW_IDENT_FIELD_NUMBER: _ClassVar[int]
    version: int
    date_unix_ms: int
    lid_c: bytes
    lid_m: bytes
    xid: bytes
    rrpid: bytes
    sw_ident: str
    def __init__(self, version: _Optional[int] = ..., date_unix_ms: _Optional[int] = ..., lid_c: _Optional[bytes] = ..., lid_m: _Optional[bytes] = ..., xid: _Optional[bytes] = ..., rrpid: _Optional[bytes] = ..., sw_ident: _Optional[str] = ...) -> None: ...

class BrandAndBIN(_message.Message):
    __slots__ = ("brand_id", "bin")
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    brand_id: str
    bin: str
    def __init__(self, brand_id: _Optional[str] = ..., bin: _Optional[str] = ...) -> None: ...
