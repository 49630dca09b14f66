"""Checking an authorization request (RFC 6749 4.1.1, RFC 7636 4.3, spec section 2).

The order matters (RFC 6749 4.1.2.1): until the client and its redirect URI
are known to match, nothing may be sent to the redirect URI, so those two
failures are an error page of our own; everything after is reported to the
app at its (now trusted) redirect URI with ``error=`` and the ``state``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multidict import MultiDict, MultiMapping

from . import scopes as sc
from .clients import Client

PKCE_CHALLENGE_LENGTH = 43
"""BASE64URL(SHA-256(verifier)) without padding is always 43 characters (RFC 7636 4.2)."""
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
PARAMETERS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
              "code_challenge_method", "record_hint", "prompt", "response_mode", "ui_locales")
"""What the consent form carries back, unchanged, to be checked again on its answer."""


class ResponseMode(enum.Enum):
    QUERY = "query"
    FORM_POST = "form_post"


class PageProblem(enum.Enum):
    """Failures shown on our own error page: the app cannot be told (no trusted redirect URI)."""

    UNKNOWN_CLIENT = "This app is not registered with this service, so it cannot be authorized."
    BAD_REDIRECT = ("The app asked to send you to an address it has not registered. For your safety, "
                    "you will not be sent there.")
    DUPLICATE = "The app's request repeats a parameter, so it cannot be trusted."


@dataclass(frozen=True, slots=True)
class PageError:
    problem: PageProblem
    detail: str


@dataclass(frozen=True, slots=True)
class RedirectError:
    """An error for the app, delivered at its redirect URI (RFC 6749 4.1.2.1)."""

    client: Client
    redirect_uri: str
    response_mode: ResponseMode
    state: str | None
    error: str
    description: str


@dataclass(frozen=True, slots=True)
class AuthRequest:
    client: Client
    redirect_uri: str
    response_mode: ResponseMode
    state: str | None
    code_challenge: str
    requested: frozenset[str]
    record_hint: str | None
    prompt: str | None
    params: Mapping[str, str]
    """The request's parameters, for the consent form's hidden fields."""

    @property
    def required(self) -> frozenset[str]:
        """All-or-nothing: the client's required scopes, and whatever else it asked for that is not optional."""
        return (self.client.required_scopes | (self.requested - self.client.optional_scopes)) - {sc.OFFLINE}

    @property
    def optional(self) -> frozenset[str]:
        return self.requested & self.client.optional_scopes

    @property
    def offline_offered(self) -> bool:
        return sc.OFFLINE in self.requested and self.client.offline_allowed


def text_params(given: MultiMapping[Any]) -> MultiDict[str]:
    """The request's parameters as text (a form's file fields are not parameters of ours)."""
    return MultiDict((k, v) for k, v in given.items() if isinstance(v, str))


def check_request(params: MultiMapping[str], client: Client | None) -> AuthRequest | PageError | RedirectError:
    """``client`` is the client ``params["client_id"]`` names, if there is one."""
    for name in PARAMETERS:
        if len(params.getall(name, [])) > 1:  # RFC 6749 3.1: parameters MUST NOT be included more than once
            return PageError(PageProblem.DUPLICATE, name)
    client_id = params.get("client_id", "")
    if client is None or client.client_id != client_id:
        return PageError(PageProblem.UNKNOWN_CLIENT, client_id)
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or not client.redirect_allowed(redirect_uri):
        return PageError(PageProblem.BAD_REDIRECT, redirect_uri)
    state = params.get("state")
    raw_mode = params.get("response_mode", ResponseMode.QUERY.value)
    mode = next((m for m in ResponseMode if m.value == raw_mode), ResponseMode.QUERY)

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(client, redirect_uri, mode, state, error, description)

    if raw_mode not in {m.value for m in ResponseMode}:
        return fail("invalid_request", "response_mode must be query or form_post")
    if params.get("response_type") != "code":
        return fail("unsupported_response_type", "only response_type=code is supported")
    method = params.get("code_challenge_method")
    challenge = params.get("code_challenge", "")
    if method != "S256":
        return fail("invalid_request", "PKCE is required with code_challenge_method=S256 (plain is not accepted)")
    if len(challenge) != PKCE_CHALLENGE_LENGTH or not set(challenge) <= _B64URL:
        return fail("invalid_request", "code_challenge must be BASE64URL(SHA256(code_verifier)), 43 characters")
    requested = frozenset(sc.split(params.get("scope"))) if params.get("scope") else (
        client.required_scopes | client.optional_scopes)
    if len(params.get("scope", "")) > sc.MAX_SCOPE_LENGTH or sc.invalid(requested):
        return fail("invalid_scope", f"not a scope: {' '.join(sorted(sc.invalid(requested)))[:200]}")
    if requested & sc.CLIENT_SCOPES:
        which = " ".join(sorted(requested & sc.CLIENT_SCOPES))
        reason = "public clients may not use" if client.public else "client-credentials only:"
        return fail("invalid_scope", f"{reason} {which}")
    if sc.OFFLINE in requested and not client.offline_allowed:
        return fail("invalid_scope", "this app is not allowed offline_access")
    outside = requested - client.allowed_scopes
    if outside:
        return fail("invalid_scope", f"not allowed for this app: {' '.join(sorted(outside))}")
    prompt = params.get("prompt")
    if prompt not in (None, "consent", "create", "login"):
        return fail("invalid_request", "prompt must be consent, create or login")
    return AuthRequest(
        client=client, redirect_uri=redirect_uri, response_mode=mode, state=state, code_challenge=challenge,
        requested=requested, record_hint=params.get("record_hint"), prompt=prompt,
        params={k: params[k] for k in PARAMETERS if k in params},
    )
