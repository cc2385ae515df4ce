from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Signature(_message.Message):
    __slots__ = ("signer_cert_thumb", "alg", "value")
    SIGNER_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    signer_cert_thumb: bytes
    alg: str
    value: bytes
    def __init__(self, signer_cert_thumb: _Optional[bytes] = ..., alg: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class CertBundle(_message.Message):
    __slots__ = ("certificates", "crls", "brand_crl_identifier")
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    CRLS_FIELD_NUMBER: _ClassVar[int]
    BRAND_CRL_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    certificates: _containers.RepeatedScalarFieldContainer[bytes]
    crls: _containers.RepeatedScalarFieldContainer[bytes]
    brand_crl_identifier: bytes
    def __init__(self, certificates: _Optional[_Iterable[bytes]] = ..., crls: _Optional[_Iterable[bytes]] = ..., brand_crl_identifier: _Optional[bytes] = ...) -> None: ...

class Signed(_message.Message):
    __slots__ = ("content_type", "tbs", "signatures", "bundle")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TBS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    tbs: bytes
    signatures: _containers.RepeatedCompositeFieldContainer[Signature]
    bundle: CertBundle
    def __init__(self, content_type: _Optional[str] = ..., tbs: _Optional[bytes] = ..., signatures: _Optional[_Iterable[_Union[Signature, _Mapping]]] = ..., bundle: _Optional[_Union[CertBundle, _Mapping]] = ...) -> None: ...

class DetachedSignature(_message.Message):
    __slots__ = ("content_type", "signature")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    signature: Signature
    def __init__(self, content_type: _Optional[str] = ..., signature: _Optional[_Union[Signature, _Mapping]] = ...) -> None: ...

class Sealed(_message.Message):
    __slots__ = ("content_type", "recipient_cert_thumb", "kem_alg", "kem_ciphertext", "aead_alg", "nonce", "ciphertext", "extra_nonce", "extra_ciphertext", "extra_content_type", "xid", "rrpid")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_CERT_THUMB_FIELD_NUMBER: _ClassVar[int]
    KEM_ALG_FIELD_NUMBER: _ClassVar[int]
    KEM_CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    AEAD_ALG_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_NONCE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    XID_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    recipient_cert_thumb: bytes
    kem_alg: str
    kem_ciphertext: bytes
    aead_alg: str
    nonce: bytes
    ciphertext: bytes
    extra_nonce: bytes
    extra_ciphertext: bytes
    extra_content_type: str
    xid: bytes
    rrpid: bytes
    def __init__(self, content_type: _Optional[str] = ..., recipient_cert_thumb: _Optional[bytes] = ..., kem_alg: _Optional[str] = ..., kem_ciphertext: _Optional[bytes] = ..., aead_alg: _Optional[str] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ..., extra_nonce: _Optional[bytes] = ..., extra_ciphertext: _Optional[bytes] = ..., extra_content_type: _Optional[str] = ..., xid: _Optional[bytes] = ..., rrpid: _Optional[bytes] = ...) -> None: ...

class SealedWithBaggage(_message.Message):
    __slots__ = ("sealed", "baggage", "baggage_content_type")
    SEALED_FIELD_NUMBER: _ClassVar[int]
    BAGGAGE_FIELD_NUMBER: _ClassVar[int]
    BAGGAGE_CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    sealed: Sealed
    baggage: bytes
    baggage_content_type: str
    def __init__(self, sealed: _Optional[_Union[Sealed, _Mapping]] = ..., baggage: _Optional[bytes] = ..., baggage_content_type: _Optional[str] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ("content_type", "t1", "t1_content_type", "dd_t2", "t2_content_type")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    T1_FIELD_NUMBER: _ClassVar[int]
    T1_CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DD_T2_FIELD_NUMBER: _ClassVar[int]
    T2_CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    t1: bytes
    t1_content_type: str
    dd_t2: bytes
    t2_content_type: str
    def __init__(self, content_type: _Optional[str] = ..., t1: _Optional[bytes] = ..., t1_content_type: _Optional[str] = ..., dd_t2: _Optional[bytes] = ..., t2_content_type: _Optional[str] = ...) -> None: ...

class KeySealed(_message.Message):
    __slots__ = ("content_type", "aead_alg", "nonce", "ciphertext", "rrpid")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AEAD_ALG_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    RRPID_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    aead_alg: str
    nonce: bytes
    ciphertext: bytes
    rrpid: bytes
    def __init__(self, content_type: _Optional[str] = ..., aead_alg: _Optional[str] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ..., rrpid: _Optional[bytes] = ...) -> None: ...
