"""What the Connect and Pick-Up HTTP handlers share: the services (built once per app), reading
a code and a JSON body, the code-entry rate limit, the anti-enumeration alarm, and the one table
from a code flow's outcome to a status and an error code (spec sections 3 and 4).

| outcome                      | status | error               |
|------------------------------|--------|---------------------|
| malformed code (no attempt)  | 400    | malformed_code      |
| unknown or deleted code      | 404    | invalid_code        |
| expired                      | 410    | expired             |
| picked up already            | 410    | picked_up           |
| locked                       | 423    | locked              |
| allocated, nothing dropped   | 409    | package_incomplete  |
| wrong answer                 | 401    | wrong_answer + attempts_remaining |
| over the rate limit          | 429    | rate_limited        |
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from aiohttp import web

from ..answers import Derivations
from ..codes import Code, MalformedCode, Question, Refusal, Refused, WrongAnswer, parse_code
from ..inbound import Inbound
from ..packages.store import Packages
from ..people import Person
from ..web.context import BridgeContext, context
from ..web.errors import JsonError
from ..web.pages import check_csrf, current_person, render
from ..web.sessions import session_cookie
from .store import ConnectRequests

log = structlog.get_logger("records_bridge.codes")

PEPPER_PURPOSE = "connect-code-pepper"
"""The HMAC key of stored codes, derived from the bridge key (web/settings.py); packages share it."""
MAX_JSON_BYTES = 64 * 1024
"""A patient call or a connect request is a few short strings; packages and inbound messages have their own limits."""
INLINE_JSON_BYTES = 256 * 1024
"""Bodies up to this size are parsed on the event loop (well under a millisecond); larger ones in a thread."""
ALARM_WINDOW = timedelta(minutes=10)
ALARM_MIN_LOOKUPS = 50
ALARM_RATIO = 0.5
"""Anti-enumeration alarm (spec section 3): over ten minutes, at least 50 code look-ups of which more than
half named no code. A person mistypes once or twice; an enumerator misses almost every time. Per process,
like the rate limiter; it logs (``codes.enumeration_suspected``) at most once per window."""
ALARM_MAX_SAMPLES = 10_000
"""Memory bound: under a flood the window is the last 10,000 look-ups, which judges the ratio as well."""

STATUS: dict[Refusal, int] = {
    Refusal.UNKNOWN: 404,
    Refusal.EXPIRED: 410,
    Refusal.PICKED_UP: 410,
    Refusal.LOCKED: 423,
    Refusal.INCOMPLETE: 409,
}
WORDS: dict[Refusal, str] = {
    Refusal.UNKNOWN: "There is no such code. Check it and try again.",
    Refusal.EXPIRED: "This code has expired. Ask whoever gave it to you for a new one.",
    Refusal.PICKED_UP: "This package has been picked up already.",
    Refusal.LOCKED: "This code is locked after three wrong answers. Ask whoever gave it to you for a new one.",
    Refusal.INCOMPLETE: "Nothing has been dropped off with this code yet. Try again later.",
}


@dataclass
class FailureAlarm:
    _seen: deque[tuple[datetime, bool]] = field(default_factory=lambda: deque(maxlen=ALARM_MAX_SAMPLES), repr=False)
    _raised_at: datetime | None = None

    def count(self, *, failed: bool, at: datetime) -> bool:
        """Counts one look-up; True when this one raised the alarm."""
        self._seen.append((at, failed))
        while self._seen and self._seen[0][0] <= at - ALARM_WINDOW:
            self._seen.popleft()
        failures = sum(1 for _, f in self._seen if f)
        suspicious = len(self._seen) >= ALARM_MIN_LOOKUPS and failures > ALARM_RATIO * len(self._seen)
        if not suspicious or (self._raised_at is not None and at - self._raised_at < ALARM_WINDOW):
            return False
        self._raised_at = at
        log.warning("codes.enumeration_suspected", lookups=len(self._seen), failures=failures,
                    window_s=ALARM_WINDOW.total_seconds())
        return True


@dataclass(frozen=True)
class Services:
    connect: ConnectRequests
    packages: Packages
    inbound: Inbound
    alarm: FailureAlarm


SERVICES = web.AppKey("rb.codes", Services)


def install(app: web.Application, ctx: BridgeContext) -> Services:
    """The services on ``app``, built the first time a feature's ``setup`` asks."""
    if SERVICES not in app:
        pepper = ctx.settings.secret(PEPPER_PURPOSE)
        kdf = Derivations()
        packages = Packages(ctx.store, pepper, kdf)
        app[SERVICES] = Services(ConnectRequests(ctx.store, pepper, kdf), packages,
                                 Inbound(ctx.store, ctx.records, packages), FailureAlarm())
    return app[SERVICES]


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def json_body(request: web.Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise JsonError(413, "too_large", f"the body may be at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_any():  # never more than limit + one chunk in memory
        size += len(chunk)
        if size > limit:
            raise JsonError(413, "too_large", f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        # a package or an inbound message is tens of MiB of JSON: parse it in a worker thread
        body = await asyncio.to_thread(json.loads, raw) if len(raw) > INLINE_JSON_BYTES else json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise JsonError(400, "invalid_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise JsonError(400, "invalid_request", "the body must be a JSON object")
    return body


def code_of(value: object) -> Code:
    """A typed code, or 400 ``malformed_code`` (never an attempt)."""
    if not isinstance(value, str):
        raise JsonError(400, "malformed_code", "code must be a string of 20 letters (hyphens and spaces allowed)")
    try:
        return parse_code(value)
    except MalformedCode:
        raise JsonError(400, "malformed_code", "a code is 20 letters from BCDFGHJKMNPQRSTVWXYZ, in groups of four") from None


def rate_keys(request: web.Request) -> tuple[str, ...]:
    ip = request.remote or "unknown"
    session = request.cookies.get(session_cookie(request), "")
    keys = [f"code:ip:{ip}"]
    if session:
        keys.append("code:session:" + hashlib.sha256(session.encode()).hexdigest()[:32])
    return tuple(keys)


def allowed(request: web.Request, ctx: BridgeContext, at: datetime) -> bool:
    """Code entry: at most 10 a minute per session and per IP (spec section 3). Both are counted."""
    results = [ctx.limits.code_entry.allow(key, at=at) for key in rate_keys(request)]
    return all(results)


def limit_code_entry(request: web.Request, ctx: BridgeContext, at: datetime) -> None:
    if not allowed(request, ctx, at):
        raise JsonError(429, "rate_limited", "too many code entries; wait a minute", headers={"Retry-After": "60"})


def observe(request: web.Request, outcome: object, at: datetime) -> None:
    """Feeds the anti-enumeration alarm: an unknown code is a miss."""
    failed = isinstance(outcome, Refused) and outcome.reason is Refusal.UNKNOWN
    services(request).alarm.count(failed=failed, at=at)


def refused(outcome: Refused) -> JsonError:
    return JsonError(STATUS[outcome.reason], outcome.reason.value, WORDS[outcome.reason])


def wrong_words(outcome: WrongAnswer) -> str:
    if outcome.attempts_remaining == 0:
        return "That answer is not right. The code is now locked."
    tries = "one more try" if outcome.attempts_remaining == 1 else f"{outcome.attempts_remaining} more tries"
    return f"That answer is not right. You have {tries} before the code locks."


def wrong(outcome: WrongAnswer) -> JsonError:
    return JsonError(401, "wrong_answer", wrong_words(outcome), attempts_remaining=outcome.attempts_remaining)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class CodeLookup(Protocol):
    """Connect requests and packages alike: a code's question, or why there is none."""

    async def lookup(self, code: Code, *, at: datetime) -> Question | Refused: ...


async def api_person(request: web.Request) -> Person:
    """The signed-in person behind a patient API call; the CSRF token comes as a header."""
    person = await current_person(request)
    if person is None:
        raise JsonError(401, "sign_in_required", "sign in first")
    await check_csrf(request, {})
    return person


async def question(request: web.Request, flow: Callable[[Services], CodeLookup]) -> web.Response:
    """``POST .../lookup {code}`` for either flow: rate-limited, observed by the failure
    alarm, answered with the question only (spec 3: not yet who is asking)."""
    await api_person(request)
    ctx = context(request)
    body = await json_body(request)
    code = code_of(body.get("code"))
    at = ctx.clock()
    limit_code_entry(request, ctx, at)
    outcome = await flow(services(request)).lookup(code, at=at)
    observe(request, outcome, at)
    if isinstance(outcome, Refused):
        raise refused(outcome)
    return web.json_response({"question": outcome.question})


async def typed_code(request: web.Request, template: str,
                     flow: Callable[[Services], CodeLookup]) -> web.Response | tuple[Code, Question]:
    """The code-entry page's form, for either flow: the code and its question, or the page
    again saying why not (malformed, too many tries, or the code's refusal in words).
    The caller has required a signed-in person."""
    form = await request.post()
    await check_csrf(request, form)
    ctx = context(request)
    typed = str(form.get("code", ""))[:64]
    at = ctx.clock()
    try:
        code = code_of(typed)
    except JsonError:
        return render(request, template, status=400, code=typed,
                      error="That is not a code: a code is 20 letters, in five groups of four.")
    if not allowed(request, ctx, at):
        return render(request, template, status=429, code=typed, error="Too many tries. Wait a minute.")
    outcome = await flow(services(request)).lookup(code, at=at)
    observe(request, outcome, at)
    if isinstance(outcome, Refused):
        return render(request, template, status=STATUS[outcome.reason], code=typed, error=WORDS[outcome.reason])
    return code, outcome
