"""A BrandCRLIdentifier that names a CA's CRL twice, or more CRLs than a BCI may list,
is refused for that (SET-PROTOCOL.md 2.7: a receiver holds exactly the CRL the BCI names
for each CA), each with its own reason: the other checks of the BCI would let such a one
through, signed as it is by the brand root."""

from __future__ import annotations

from setcore.errors import ErrorCode
from setcore.pki import TrustStore
from setcore.pki.bci import MAX_BCI_CRLS
from tests.setcore.refusals import refused

from .conftest import World
from .test_bci import _pairs, _sign, _tbs


def test_a_bci_naming_one_ca_twice_is_refused(world: World) -> None:
    # The same CA with two CRLs: which one a verifier held would be the order's choice,
    # a revoked certificate left out of the other passing.
    pairs = _pairs(world)
    tbs = _tbs(world, 2, [*pairs, pairs[1]])
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        TrustStore(world.root.der).update_revocation,
        _sign(world, tbs),
        world.crls,
    )
    assert reason == "BCI lists a CA twice"


def test_a_bci_listing_more_crls_than_allowed_is_refused(world: World) -> None:
    pairs = _pairs(world)
    tbs = _tbs(world, 2, pairs)
    while len(tbs.crls) <= MAX_BCI_CRLS:
        tbs.crls.append(tbs.crls[0])
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        TrustStore(world.root.der).update_revocation,
        _sign(world, tbs),
        world.crls,
    )
    assert reason == "BCI lists too many CRLs"


def test_more_crls_supplied_than_a_bci_may_list_are_refused(world: World) -> None:
    crls = world.crls * (MAX_BCI_CRLS // len(world.crls) + 1)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        TrustStore(world.root.der).update_revocation,
        world.bci,
        crls,
    )
    assert reason == "too many CRLs supplied"
