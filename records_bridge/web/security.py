"""Headers on every response of the bridge (a response hook, so errors and
static files get them too).

The Content-Security-Policy allows only this origin's scripts and styles
(no inline script anywhere: the pages work without JavaScript) and no
framing (clickjacking on the consent page). ``form-action 'self'`` stops an
injected form from posting elsewhere; the two pages whose forms end at an
app -- the consent page (its answer is a redirect to the app's
``redirect_uri``, which browsers check against ``form-action``) and the
``form_post`` response page -- add exactly that redirect URI's origin with
``allow_form_action``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from .context import context
from .sessions import set_csrf_cookie

_FORM_ACTION = web.RequestKey("rb.form_action", str)
_BASE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HSTS_MAX_AGE = 63072000
"""Two years, the value hstspreload.org asks for."""


def csp_source(uri: str) -> str:
    """The narrowest CSP source expression matching ``uri`` (a loopback URI matches any port, RFC 8252 7.3)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.hostname:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        if parts.hostname in ("127.0.0.1", "::1"):
            return f"{parts.scheme}://{host}:*"
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"  # a private-use scheme (RFC 8252 7.1): the scheme is the whole origin


def allow_form_action(request: web.Request, uri: str) -> None:
    request[_FORM_ACTION] = csp_source(uri)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    extra = request.get(_FORM_ACTION)
    form_action = f"form-action 'self' {extra}" if extra else "form-action 'self'"
    response.headers["Content-Security-Policy"] = f"{_BASE_POLICY}; {form_action}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # no-referrer: an authorization code or a pickup code in a URL never leaks to another site
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if context(request).settings.base_url.startswith("https://"):
        response.headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE}"
    if request.path.startswith(("/oauth/", "/v1/", "/signin", "/signup")) and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    set_csrf_cookie(request, response)
