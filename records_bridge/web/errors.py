"""JSON error bodies, one shape everywhere: ``{"error": code, "error_description": text}``
(RFC 6749 section 5.2's shape, used by the app API too)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def _body(code: str, description: str, extra: dict[str, Any]) -> str:
    return json.dumps({"error": code, "error_description": description, **extra})


def json_error(status: int, code: str, description: str, *, headers: dict[str, str] | None = None,
               **extra: Any) -> web.Response:
    return web.Response(status=status, text=_body(code, description, extra), content_type="application/json",
                        headers=headers)


class JsonError(web.HTTPException):
    """Raise from inside a handler (or a helper it calls); answers with ``json_error``'s body."""

    def __init__(self, status: int, code: str, description: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        self.status_code = status
        self.code = code
        super().__init__(headers=headers, text=_body(code, description, extra), content_type="application/json")
