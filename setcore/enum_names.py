"""Names for the result codes a peer's answer carries, including codes this build does not know.

protobuf's enums are open: a gateway, merchant or CA of a later release may answer with a
result code added after this build (``CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS`` and
``BATCH_ADMIN_STATUS_BATCH_NOT_CLOSED`` were). The enums in ``RESULT_CODES`` are the
ones a peer answers with; strict parsing (``setcore.encoding``) lets their undefined
values through, and no reader takes one for the success value: an unknown code is never
an approval. Nor is it a final "no" where that could be wrong at a cost (a hold standing
while the cardholder buys again, a capture taken but recorded refused): once the rest of
the answer is verified, it is an outcome unknown, and nothing final is recorded of it.
The wallet reads so an unknown CompletionCode or AuthCode of a PRes or InqRes (the
purchase's record stays as it was, for ``inquire`` to settle); the merchant an unknown
AuthCode, CapCode, AuthRevCode, CapRevOrCredCode or BatchAdminStatus inside a gateway's
answer (the request stays pending, retried with backed-off waits: the gateway answers
each retry as it did the first, until the merchant is upgraded); both an unknown
ErrorCode of a signed Error, which could mean "failed after acting" as
UNSPECIFIED_FAILURE does; and a certificate requester an unknown CertStatusCode, which
could mean "pended" as well as "refused"
(``setcore.registration_certreq.CertStatusUnknown``: nothing installed, the request
kept). An unknown PCertCode stays a refusal: the gateway serves the merchant no
certificate for that brand, so there is nothing to use either way, and the operator is
told the code. A RespReason only explains an AuthCode: an unknown one is shown by its
name beside it. The bench's tally (``clients.loadtest``) decides nothing and lists an
AuthRes of an unknown AuthCode with the declines, under the code's name. Every other
enum (what a request asks for: a batch operation, a request type) stays refused when
undefined, since the receiver would have to act on it.

What a value is called in a log line, a record or a command's output is ``code_name``'s:
the enum's own name for a value it defines, and ``<Enum> <number>`` (for example
``CapRevOrCredCode 14``) for one it does not. That form, because:

- it is the one ``setpay merchant`` already shows for a code a newer merchant saved in
  the same database, so that one code reads the same in every place;
- it can never be a real value's name, which is an UPPER_SNAKE identifier (no spaces):
  nothing that reads a record or a log takes it for a code of some release, and a
  command that strips a value's prefix (``AUTH_CODE_``) leaves it whole;
- it keeps the number, the one thing a later release's name can be matched to, and says
  which enum's number it is (the same number means other things in other enums);
- it is stable (the enum's name and the number only) and bounded: an enum name and a
  32-bit integer, whatever the peer sent.

A metric must not take it as a label value (each number would be a new series): the
metric label guards map anything outside their fixed sets to their ``other`` value, and
``is_known`` says which values are inside.
"""

from __future__ import annotations

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from setpay.v1 import (
    authorization_pb2,
    capture_pb2,
    error_pb2,
    gateway_admin_pb2,
    purchase_pb2,
    registration_pb2,
)

__all__ = ["RESULT_CODES", "code_name", "is_known"]

#: The full names of the enums a peer answers with (an answer's result code or reason, a
#: SET Error's code, a CA's CertStatusCode): a peer of a later release may send values
#: this build does not define. An unknown CertStatusCode is not read as a refusal (it
#: could as well mean "pended" as "refused"): ``setcore.registration_certreq`` runs every
#: other check of the CA's answer first, then raises ``CertStatusUnknown``, which the
#: requesters report as an outcome unknown, installing nothing and keeping the request.
RESULT_CODES: frozenset[str] = frozenset(
    enum.DESCRIPTOR.full_name
    for enum in (
        authorization_pb2.AuthCode,
        authorization_pb2.RespReason,
        authorization_pb2.AuthRevCode,
        authorization_pb2.CapCode,
        capture_pb2.CapRevOrCredCode,
        error_pb2.ErrorCode,
        gateway_admin_pb2.PCertCode,
        gateway_admin_pb2.BatchAdminStatus,
        purchase_pb2.CompletionCode,
        registration_pb2.CertStatusCode,
    )
)


def is_known(enum: EnumTypeWrapper, value: int) -> bool:
    """True when this build's ``enum`` defines ``value``."""
    return value in enum.DESCRIPTOR.values_by_number


def code_name(enum: EnumTypeWrapper, value: int) -> str:
    """``value``'s name in ``enum``; ``<Enum> <value>`` for a value it does not define (a
    peer of a later release), never ``ValueError`` as ``enum.Name`` raises."""
    known = enum.DESCRIPTOR.values_by_number.get(value)
    if known is not None:
        return str(known.name)
    return f"{enum.DESCRIPTOR.name} {int(value)}"
