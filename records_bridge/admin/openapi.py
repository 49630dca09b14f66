"""The admin API's OpenAPI 3.1 document, built from the operation table itself
(``routes.OPERATIONS``), so a route cannot exist undescribed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

OPENAPI_VERSION = "3.1.0"

_ERROR = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_ERRORS = {
    "400": "refused: the request or what it names cannot be used (the CLI's exit 1 or 2)",
    "401": "no admin token, or the wrong one",
    "404": "no such thing",
    "409": "conflicts with what exists",
}


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.removeprefix("/admin/v1/").split("/") if p]
    return method.lower() + "".join(w[:1].upper() + w[1:].replace("_", "") for w in words)


def document(operations: Iterable[Any], *, base_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {}
        if op.status == 204:
            responses["204"] = {"description": "done"}
        else:
            responses[str(op.status)] = {"description": "done",
                                         "content": {"application/json": {"schema": op.result}}}
        for code, text in _ERRORS.items():
            responses[code] = {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        entry: dict[str, Any] = {
            "operationId": _operation_id(op.method, op.path),
            "summary": op.summary,
            "tags": [op.tag],
            "responses": responses,
        }
        if op.params:
            entry["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "description": p.description, "schema": p.schema}
                for p in op.params
            ]
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "directgw records bridge: administration",
            "version": "1",
            "description": "What the directgw command line does, over HTTP: records, OAuth clients, EHR accounts, "
                           "domains and keys, trust anchors and bundles, messages. Every call needs "
                           "Authorization: Bearer <admin token> ([bridge] admin_token_file).",
        },
        "servers": [{"url": base_url}],
        "security": [{"adminToken": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                               "description": "the token in [bridge] admin_token_file"}},
            "schemas": {"Error": _ERROR},
        },
    }
