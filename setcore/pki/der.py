"""Just enough DER to encode and strictly decode setpay's own certificate extensions.

setpay's extensions are tiny (an ENUMERATED, a 32-byte OCTET STRING, a few UTF8Strings
and a BOOLEAN), so a full ASN.1 library would be more code to trust than this module.
Decoding is strict DER: definite minimal lengths, minimal integers, BOOLEAN only 0x00 or
0xFF, and nothing after the value. A violation raises ``DerError`` (a ``ValueError``),
which the extension layer turns into a protocol error.
"""

from __future__ import annotations

BOOLEAN = 0x01
OCTET_STRING = 0x04
ENUMERATED = 0x0A
UTF8_STRING = 0x0C
SEQUENCE = 0x30

# setpay's extension values are tens of bytes; refusing anything above 4 KiB keeps a
# hostile certificate from making the decoder walk large buffers for nothing.
MAX_VALUE_BYTES = 4096
# ENUMERATED values here are CertificateType numbers (< 128); four content bytes leave
# room for growth while bounding what a peer can make us decode.
MAX_ENUMERATED_BYTES = 4


class DerError(ValueError):
    """The bytes are not the strict DER this module expects."""


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode(tag: int, content: bytes) -> bytes:
    """One TLV: ``tag``, the DER length of ``content``, ``content``."""
    return bytes([tag]) + _length(len(content)) + content


def read(data: bytes, offset: int = 0, max_bytes: int = MAX_VALUE_BYTES) -> tuple[int, bytes, int]:
    """Read one TLV at ``offset``; returns (tag, content, offset after it)."""
    if len(data) > max_bytes:
        raise DerError("DER value too large")
    if offset + 2 > len(data):
        raise DerError("truncated DER header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used here")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0:
            raise DerError("indefinite length is not DER")
        if count > 2 or pos + count > len(data):
            raise DerError("bad DER length")
        size = int.from_bytes(data[pos : pos + count], "big")
        if size < 0x80 or data[pos] == 0:
            raise DerError("non-minimal DER length")
        pos += count
    end = pos + size
    if end > len(data):
        raise DerError("truncated DER value")
    return tag, data[pos:end], end


def read_only(data: bytes, tag: int) -> bytes:
    """The content of ``data``, which must be exactly one TLV with ``tag``."""
    found, content, end = read(data)
    if found != tag:
        raise DerError(f"expected tag 0x{tag:02x}, found 0x{found:02x}")
    if end != len(data):
        raise DerError("trailing bytes after DER value")
    return content


def read_sequence(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) items of a SEQUENCE that must span all of ``data``."""
    content = read_only(data, SEQUENCE)
    items: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(content):
        tag, value, offset = read(content, offset)
        items.append((tag, value))
    return items


def enumerated(value: int) -> bytes:
    """DER ENUMERATED of a non-negative ``value``."""
    if value < 0:
        raise ValueError("negative ENUMERATED values are not used")
    # One extra bit keeps the two's-complement sign bit clear.
    return encode(ENUMERATED, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def parse_enumerated(content: bytes) -> int:
    """The non-negative value of ENUMERATED content octets."""
    if not content or len(content) > MAX_ENUMERATED_BYTES:
        raise DerError("bad ENUMERATED length")
    if content[0] & 0x80:
        raise DerError("negative ENUMERATED")
    if len(content) > 1 and content[0] == 0 and not content[1] & 0x80:
        raise DerError("non-minimal ENUMERATED")
    return int.from_bytes(content, "big")


def utf8_string(text: str) -> bytes:
    """DER UTF8String."""
    return encode(UTF8_STRING, text.encode("utf-8"))


def parse_utf8(content: bytes) -> str:
    """The text of UTF8String content octets."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DerError("invalid UTF-8 in UTF8String") from exc


def boolean(value: bool) -> bytes:
    """DER BOOLEAN (TRUE is 0xFF)."""
    return encode(BOOLEAN, b"\xff" if value else b"\x00")


def parse_boolean(content: bytes) -> bool:
    """The value of BOOLEAN content octets; DER allows only 0x00 and 0xFF."""
    if content == b"\xff":
        return True
    if content == b"\x00":
        return False
    raise DerError("BOOLEAN must be 0x00 or 0xFF in DER")


def sequence(*items: bytes) -> bytes:
    """DER SEQUENCE of already-encoded items."""
    return encode(SEQUENCE, b"".join(items))
