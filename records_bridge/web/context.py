"""What every handler of the bridge is given: built once by the composition
root (``directgw bridge`` or ``directgw serve``) and stored on the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from gateway.store import Store
from records_bridge.store import RecordStore

from .ratelimit import RateLimits
from .refusals import Refusals
from .settings import BridgeSettings


@dataclass(frozen=True)
class BridgeContext:
    store: Store
    records: RecordStore
    clock: Callable[[], datetime]
    """Read only at the edge (handlers); everything below takes ``at``."""
    settings: BridgeSettings
    limits: RateLimits = field(default_factory=RateLimits)
    refusals: Refusals = field(default_factory=Refusals)
    """Abuse refused, counted (web/refusals.py)."""


CONTEXT = web.AppKey("context", BridgeContext)


def context(request: web.Request) -> BridgeContext:
    return request.app[CONTEXT]
