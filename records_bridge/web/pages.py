"""Server-rendered pages: one Jinja2 environment (autoescaped) over
``records_bridge/templates``, and ``render``.

Every template extends ``base.html`` (skip link, landmarks, one ``h1`` per
page, the signed-in person, sign out). Values reach templates escaped; the
CSRF field is the only markup handed in. Re-exports the session and CSRF
helpers so a feature module imports one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from .context import context
from .security import allow_form_action
from .sessions import PERSON, check_csrf, csrf_field, csrf_token, current_person, require_person

__all__ = [
    "allow_form_action", "check_csrf", "csrf_field", "csrf_token", "current_person", "render", "require_person",
]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt value is an error in tests, not a blank on the page
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(request: web.Request, template: str, /, *, status: int = 200, **values: Any) -> web.Response:
    """``template`` rendered with ``values``, plus ``person`` (once ``current_person`` ran), ``csrf_field`` and ``base_url``."""
    html = _ENV.get_template(template).render(
        person=request.get(PERSON),
        csrf_field=csrf_field(request),
        base_url=context(request).settings.base_url,
        **values,
    )
    return web.Response(text=html, status=status, content_type="text/html")
