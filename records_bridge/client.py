"""For apps: sealing a Drop-Off package on the app's side (spec section 4).

```python
from records_bridge.client import PackageItem, seal_package
envelope = seal_package([PackageItem("application/pdf", pdf, "results.pdf")], "Fluffy1",
                        code=allocated_code, client_id=my_client_id)
# POST /v1/packages {"code": allocated_code, "external_id": ..., "friendly_name": ...,
#                    "question": ..., "envelope": envelope}
```

The answer never leaves the app, which is why this mode is preferred to the
bridge's convenience mode. The code must be known before sealing (it is
bound into the envelope as associated data): allocate it first with
``POST /v1/packages:allocate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .answers import checked
from .codes import parse_code
from .packages.content import PackageItem, encode_plaintext
from .packages.envelope import MIN_N, seal

__all__ = ["PackageItem", "seal_package"]


def seal_package(items: Sequence[PackageItem], answer: str, *, code: str, client_id: str, n: int = MIN_N) -> dict[str, Any]:
    """The envelope (JSON-ready dict) for ``items`` under ``answer``, bound to ``code`` and ``client_id``.

    Raises ``InvalidAnswer`` for an answer the bridge would refuse, ``MalformedCode``
    for a code that is not one, ``ContentError`` for items over the limits. Runs
    scrypt: call it off any event loop (``asyncio.to_thread``)."""
    return seal(
        encode_plaintext(items), checked(answer), code_canonical=parse_code(code).canonical, client_id=client_id, n=n
    ).to_json()
