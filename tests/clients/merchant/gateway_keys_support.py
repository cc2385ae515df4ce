"""A scripted PCertReq for ``clients.merchant.gateway_keys``'s tests."""

from __future__ import annotations

from collections.abc import Callable

from setcore.gateway_admin import GatewayCertificate


def scripted(*script: object) -> Callable[[], GatewayCertificate]:
    """A fetch that returns or raises each of ``script`` in turn."""
    left = list(script)

    def fetch() -> GatewayCertificate:
        item = left.pop(0)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, GatewayCertificate)
        return item

    return fetch
