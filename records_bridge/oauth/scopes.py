"""The scope grammar (spec section 2) and what each scope means, in words for the consent page.

* native: ``records.<type>.<ops>``, ``<type>`` an item type or ``*``, ``<ops>``
  a non-empty ordered subset of ``crud`` (create, read, update, delete);
* SMART App Launch v2: ``patient/<Resource>.<ops>``, ``<ops>`` an ordered
  subset of ``cruds`` (s = search), ``launch/patient``, ``openid``,
  ``fhirUser``, ``offline_access``;
* client scopes, for client-credentials tokens of confidential clients only:
  ``connect``, ``packages``, ``inbound.messages``.

Parsing is a split and set lookups (no regular expression on input).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from records_bridge.types import ItemType

OFFLINE = "offline_access"
CONNECT = "connect"
PACKAGES = "packages"
INBOUND = "inbound.messages"
CLIENT_SCOPES = frozenset({CONNECT, PACKAGES, INBOUND})
"""Client-credentials only; never through a person's authorization."""
PUBLIC_FORBIDDEN = frozenset({CONNECT, PACKAGES})
"""HV parity (spec section 5): ConnectPackage methods were not available to mobile apps."""
SMART_RESOURCES = frozenset({"DocumentReference", "Binary", "Patient"})
MAX_SCOPE_LENGTH = 2000
"""A scope parameter longer than every scope we know, joined, is not a request we can grant."""

_SIMPLE = {
    OFFLINE: "Keep access when you are not using the app, until you remove it",
    "openid": "Know who you are (your account's identifier)",
    "fhirUser": "Know who you are (your account's identifier)",
    "launch/patient": "Know which record you chose",
    CONNECT: "Invite patients to connect with a code (apps of providers only)",
    PACKAGES: "Drop off documents for patients to pick up (apps of providers only)",
    INBOUND: "Deliver messages into patients' records (gateways only)",
}
_OPS_WORDS = {"c": "add", "r": "read", "u": "change", "d": "delete", "s": "search"}
_TYPE_WORDS = {
    "message": "messages", "file": "files", "ccd": "care summaries (CCD)", "cda": "clinical documents (CDA)",
    "discharge_summary": "discharge summaries", "ccr": "continuity of care records (CCR)", "*": "records of every kind",
}
_RESOURCE_WORDS = {"DocumentReference": "documents", "Binary": "document contents", "Patient": "patient details"}


class ScopeKind(enum.Enum):
    NATIVE = "native"
    SMART = "smart"
    SIMPLE = "simple"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class Scope:
    text: str
    kind: ScopeKind
    target: str = ""
    """The item type (native) or FHIR resource (SMART)."""
    ops: str = ""


def _ordered_subset(ops: str, alphabet: str) -> bool:
    """``ops`` is non-empty, in ``alphabet``'s order, each letter once (SMART v2 3.0.0 "cruds")."""
    pos = -1
    for c in ops:
        i = alphabet.find(c)
        if i <= pos:
            return False
        pos = i
    return bool(ops)


def parse(text: str) -> Scope | None:
    """The scope, or None if it is not in the grammar."""
    if text in CLIENT_SCOPES:
        return Scope(text, ScopeKind.CLIENT)
    if text in _SIMPLE:
        return Scope(text, ScopeKind.SIMPLE)
    if text.startswith("records."):
        kind, _, ops = text[len("records."):].partition(".")
        if (kind == "*" or kind in {t.value for t in ItemType}) and _ordered_subset(ops, "crud"):
            return Scope(text, ScopeKind.NATIVE, kind, ops)
        return None
    if text.startswith("patient/"):
        resource, _, ops = text[len("patient/"):].partition(".")
        if resource in SMART_RESOURCES and _ordered_subset(ops, "cruds"):
            return Scope(text, ScopeKind.SMART, resource, ops)
    return None


def split(value: str | None) -> list[str]:
    """RFC 6749 3.3: space-delimited, order irrelevant, duplicates meaningless."""
    return list(dict.fromkeys((value or "").split(" "))) if value else []


def invalid(scopes: Iterable[str]) -> list[str]:
    return [s for s in scopes if parse(s) is None]


def join(scopes: Iterable[str]) -> str:
    return " ".join(sorted(set(scopes)))


def describe(text: str) -> str:
    """The scope in words, for the consent page."""
    scope = parse(text)
    if scope is None:
        return text
    if scope.kind in (ScopeKind.SIMPLE, ScopeKind.CLIENT):
        return _SIMPLE[text]
    what = _TYPE_WORDS.get(scope.target) if scope.kind is ScopeKind.NATIVE else _RESOURCE_WORDS[scope.target]
    verbs = [_OPS_WORDS[c] for c in scope.ops]
    said = verbs[0] if len(verbs) == 1 else ", ".join(verbs[:-1]) + " and " + verbs[-1]
    return f"{said.capitalize()} your {what}"


def permits(granted: Iterable[str], item_type: str, op: str) -> bool:
    """Whether ``granted`` allows ``op`` (one of c r u d) on items of ``item_type``.

    SMART ``patient/DocumentReference`` scopes cover every document type
    (everything but messages): ``r`` or ``s`` reads, ``c`` creates.
    """
    for text in granted:
        scope = parse(text)
        if scope is None:
            continue
        if scope.kind is ScopeKind.NATIVE and scope.target in ("*", item_type) and op in scope.ops:
            return True
        if (scope.kind is ScopeKind.SMART and scope.target in ("DocumentReference", "Binary")
                and item_type != ItemType.MESSAGE.value and (op in scope.ops or (op == "r" and "s" in scope.ops))):
            return True
    return False
