"""Byte-level framing: domain-separated digests, signature inputs, AEAD data, strict parsing.

Every digest, signature input and AEAD associated data starts with a fixed label and the
content type of what is being protected, so bytes made for one purpose can never be
accepted for another (SET got this from PKCS#7 content-type OIDs; protobuf gives none).
The exact layouts are pinned by the known-answer vectors in ``tests/vectors``.

    DD(ct, b)        = SHA-256("setpay/v1 DD"   0x00 ct 0x00 b)
    DD*(ct, b1..bn)  = SHA-256("setpay/v1 DD*"  0x00 ct 0x00 len64(b1) b1 ... len64(bn) bn)
    sig-input(ct, alg, t) = "setpay/v1 SIG" 0x00 ct 0x00 alg 0x00 t
    thumbprint(der)  = SHA-256(der)           (what ``openssl x509 -fingerprint -sha256`` shows)

Content types are the full protobuf names of the messages (``setpay.v1.OIData``).
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Sequence
from typing import TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from setcore.enum_names import RESULT_CODES
from setcore.errors import ErrorCode, fail, quoted
from setcore.freshness import check_id

DD_LABEL = b"setpay/v1 DD\x00"
DD_PARTS_LABEL = b"setpay/v1 DD*\x00"
SIG_LABEL = b"setpay/v1 SIG\x00"
AEAD_LABEL = b"setpay/v1 AEAD\x00"
KDF_LABEL = b"setpay/v1 KDF\x00"

# The AEAD associated data prefixes each variable field with a 16-bit length.
MAX_AEAD_FIELD_BYTES = 0xFFFF

# Largest message setcore will parse. Generous for a CertBundle of a few chains and CRLs,
# small enough that a peer cannot make us allocate without bound (SET caps echoed bad
# envelopes at 20 KB; whole messages get more room).
MAX_MESSAGE_BYTES = 1 << 20

M = TypeVar("M", bound=Message)


def content_type_of(message_class: type[Message]) -> str:
    """The content type of a TBS message class: its full protobuf name."""
    name: str = message_class.DESCRIPTOR.full_name
    return name


# Content types are setpay's own names, a few dozen: each framing call (an AuthReq makes
# some twenty) finds its bytes here. Bounded all the same, should a caller ever pass
# another's text: a refused one (ValueError) is never kept.
@functools.lru_cache(maxsize=256)
def _ct(content_type: str) -> bytes:
    encoded = content_type.encode("ascii")
    if b"\x00" in encoded or not encoded:
        raise ValueError("content type must be non-empty ASCII without NUL")
    return encoded + b"\x00"


def digest(content_type: str, data: bytes) -> bytes:
    """DD(ct, data): the domain-separated SHA-256 of ``data``."""
    return hashlib.sha256(DD_LABEL + _ct(content_type) + data).digest()


def digest_parts(content_type: str, parts: Sequence[bytes]) -> bytes:
    """DD*(ct, parts): a digest over several byte strings, each length-prefixed."""
    h = hashlib.sha256(DD_PARTS_LABEL + _ct(content_type))
    for part in parts:
        h.update(struct.pack(">Q", len(part)))
        h.update(part)
    return h.digest()


def signature_input(content_type: str, algorithm: str, tbs: bytes) -> bytes:
    """The exact bytes a signature covers: its content type and its algorithm's identifier
    (DESIGN.md section 3), each NUL-terminated, then the TBS bytes."""
    return SIG_LABEL + _ct(content_type) + _ct(algorithm) + tbs


def _len16(field: str, value: bytes) -> bytes:
    if len(value) > MAX_AEAD_FIELD_BYTES:
        raise ValueError(f"{field} of {len(value)} bytes does not fit a 16-bit length prefix")
    return struct.pack(">H", len(value)) + value


def aead_associated_data(
    content_type: str, part: str, recipient_thumb: bytes, xid: bytes, rrpid: bytes
) -> bytes:
    """Associated data binding an AEAD part to its type, recipient, transaction and request.

    Raises ValueError for a field too long for its length prefix: openers check the ids
    they pass (``check_bound_ids``) first, so only a caller's bug gets here.
    """
    return (
        AEAD_LABEL
        + _ct(content_type)
        + _ct(part)
        + _len16("recipient thumbprint", recipient_thumb)
        + _len16("XID", xid)
        + _len16("RRPID", rrpid)
    )


def check_bound_ids(xid: bytes, rrpid: bytes) -> None:
    """Refuse envelope ids that are neither absent nor an identifier (DECODING_FAILURE).

    An envelope carries the XID and RRPID it is bound to in clear, outside the AEAD, so a
    peer sets them at will; they are checked before any key is used to open it.
    """
    for name, value in (("XID", xid), ("RRPID", rrpid)):
        if value:
            check_id(value, f"envelope {name}")


def thumbprint(der: bytes) -> bytes:
    """SHA-256 of a DER certificate, CRL or serialized BCI."""
    return hashlib.sha256(der).digest()


def _reject_unknown_fields(message: Message, path: str) -> None:
    if len(UnknownFieldSet(message)):
        raise fail(ErrorCode.ERROR_CODE_UNRECOGNIZED_EXTENSION, f"unknown field in {path}")
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            continue
        if field.is_repeated:
            for item in value:
                _reject_unknown_fields(item, f"{path}.{field.name}")
        else:
            _reject_unknown_fields(value, f"{path}.{field.name}")


@functools.cache
def _enum_plan(
    descriptor: Descriptor,
) -> tuple[tuple[tuple[FieldDescriptor, str, frozenset[int]], ...], tuple[FieldDescriptor, ...]]:
    """The enum fields of a message type, with their defined numbers, and the message
    fields under which an enum field may sit (the rest need no look). A peer's result
    codes (``enum_names.RESULT_CODES``) are not checked: a later release may add to them,
    and their readers never take an unknown one for success (``enum_names`` says how)."""
    enums = tuple(
        (field, field.enum_type.name, frozenset(field.enum_type.values_by_number))
        for field in descriptor.fields
        if field.enum_type is not None and _checked_enum(field)
    )
    holders = tuple(
        field
        for field in descriptor.fields
        if field.message_type is not None and _holds_enums(field.message_type, frozenset())
    )
    return enums, holders


def _holds_enums(descriptor: Descriptor, seen: frozenset[str]) -> bool:
    if descriptor.full_name in seen:
        return False
    seen = seen | {descriptor.full_name}
    return any(
        _checked_enum(field)
        or (field.message_type is not None and _holds_enums(field.message_type, seen))
        for field in descriptor.fields
    )


def _checked_enum(field: FieldDescriptor) -> bool:
    """An enum field whose undefined values are refused: any but a peer's result code
    (a message holding only those needs no walk: 5 us of every AuthRes parse)."""
    return field.enum_type is not None and field.enum_type.full_name not in RESULT_CODES


def _reject_undefined_enums(message: Message, path: str) -> None:
    """Refuse an enum value the schema does not define, at any depth, but in a peer's
    result codes (``_enum_plan``).

    proto3 keeps such a value as a number; setpay refuses it as a value it cannot decode
    (DECODING_FAILURE, as the openers' own checks of a status do), instead of acting on a
    code it does not know or failing later where the code is named.
    """
    enums, holders = _enum_plan(message.DESCRIPTOR)
    for field, enum_name, defined in enums:
        value = getattr(message, field.name)
        values = value if field.is_repeated else (value,)
        if any(v not in defined for v in values):
            raise fail(
                ErrorCode.ERROR_CODE_DECODING_FAILURE,
                f"undefined {enum_name} value in {path}.{field.name}",
            )
    for field in holders:
        if field.is_repeated:
            for item in getattr(message, field.name):
                _reject_undefined_enums(item, f"{path}.{field.name}")
        elif message.HasField(field.name):
            _reject_undefined_enums(getattr(message, field.name), f"{path}.{field.name}")


def parse_strict(message_class: type[M], data: bytes, *, own_content_type: bool = True) -> M:
    """Parse ``data`` as ``message_class``, refusing unknown fields and a wrong content type.

    Containers (Signed, Sealed) name the type of what they carry, not their own: parse
    them with ``own_content_type=False``; the opener checks the carried type.

    Unknown fields are SET's unrecognized critical extensions: a signed part that carries
    something this code does not understand is refused, not silently ignored; so are enum
    values the schema does not define, but in a peer's result codes (``_enum_plan``).
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise fail(ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG, f"{len(data)} bytes")
    message = message_class()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE, f"cannot parse {content_type_of(message_class)}"
        ) from exc
    # Fast check in protobuf's C core: unknown fields, at any depth, are bytes the message
    # counts in its size; dropping them (recursively) must change nothing. Only when it
    # does, the Python walk of a fresh copy finds the first one to name it.
    size = message.ByteSize()
    message.DiscardUnknownFields()
    if message.ByteSize() != size:
        fresh = message_class()
        fresh.ParseFromString(data)
        where = content_type_of(message_class)
        _reject_unknown_fields(fresh, where)  # raises, naming the field's path
        raise fail(ErrorCode.ERROR_CODE_UNRECOGNIZED_EXTENSION, f"unknown field in {where}")
    _reject_undefined_enums(message, content_type_of(message_class))
    fields = message_class.DESCRIPTOR.fields_by_name
    if own_content_type and "content_type" in fields:
        expected = content_type_of(message_class)
        found = getattr(message, "content_type")  # noqa: B009 - generic over message classes
        if found != expected:
            raise fail(
                ErrorCode.ERROR_CODE_DECODING_FAILURE,
                f"content type {quoted(found)} where {expected!r} was expected",
            )
    return message
