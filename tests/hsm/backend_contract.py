"""What the KeyBackend contract modules (``test_backend_contract_*``) share.

One contract suite for the one seam: every test in those modules runs on every backend,
unchanged (the ``backend`` and ``*_backend_factory`` fixtures of ``conftest``).
"""

from __future__ import annotations

MESSAGE = b"AuthReq to-be-signed bytes \x00\x01\x02"
