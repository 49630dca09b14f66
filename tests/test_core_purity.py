"""The message core does no I/O: it imports no networking, async or database module.

Two checks: nothing in the core's own source imports such a module, and
importing the whole core does not load one indirectly. (``socket`` itself is
loaded by the standard library's ``email.utils``, which ``cryptography``
uses, so it is checked in the source only.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "gateway" / "core"
NEVER_IMPORTED = {"asyncio", "socket", "ssl", "selectors", "aiosmtpd", "aiohttp", "sqlite3", "sqlalchemy",
                  "asyncpg", "aiosqlite", "dns", "ldap3", "smtplib", "urllib", "http", "subprocess", "structlog"}
NEVER_LOADED = NEVER_IMPORTED - {"socket", "selectors", "urllib", "http", "subprocess"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_source_imports_no_io_module(path):
    assert imported_modules(path) & NEVER_IMPORTED == set()


def test_importing_the_core_loads_no_io_module():
    code = (
        "import importlib, pkgutil, sys, gateway.core\n"
        "for m in pkgutil.iter_modules(gateway.core.__path__): importlib.import_module('gateway.core.' + m.name)\n"
        f"print(','.join(sorted(m for m in {sorted(NEVER_LOADED)!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the core loaded {out.stdout.strip()}"
