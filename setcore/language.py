"""Language tags: what a requester may name as the language of its answers.

PInitReq, RegFormReq and Me-AqCInitReq carry one. The merchant copies a
PInitReq's into every TransIDs it signs and stores, and the CAs choose forms by it, so
every opener checks the same shape: a tag such as ``en-GB`` (RFC 5646), never free text.
"""

from __future__ import annotations

from setcore.errors import ErrorCode, fail

# 35 characters cover the usual forms of every well-formed RFC 5646 tag (the RFC asks
# implementations to support at least that many) and keep stored TransIDs small.
MAX_LANGUAGE_CHARS = 35


def is_language_tag(value: str) -> bool:
    """True for 1..MAX_LANGUAGE_CHARS ASCII letters, digits or hyphens."""
    return (
        0 < len(value) <= MAX_LANGUAGE_CHARS
        and value.isascii()
        and value.replace("-", "").isalnum()
    )


def check_language(value: str, what: str) -> None:
    """DECODING_FAILURE unless ``value`` is a language tag."""
    if not is_language_tag(value):
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"{what} language must be 1..{MAX_LANGUAGE_CHARS} ASCII letters, digits or '-'",
        )
