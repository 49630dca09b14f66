"""Which package may import which (issue 7 section 7).

``trust`` owns the anchor-source interface it consumes and ``anchors``
implements it, so ``trust`` imports nothing from ``anchors``; the pure core
imports neither; the neutral ``gateway.common`` (fetcher, destinations,
expiring cache) imports none of the layers that use it. Read from the
source with ``ast``, every import counted: inside functions and
``TYPE_CHECKING`` blocks too, relative ones resolved.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RULES = {
    # package: the packages it must not import
    "trust": ("anchors",),
    "gateway.core": ("trust", "anchors", "gateway.common", "gateway.discovery", "gateway.store", "gateway.cli"),
    "gateway.common": ("trust", "anchors", "gateway.core", "gateway.discovery", "gateway.store", "gateway.cli"),
}


def imports_of(path: Path) -> set[str]:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("package", RULES, ids=RULES.keys())
def test_layer_imports(package):
    files = sorted((ROOT / package.replace(".", "/")).rglob("*.py"))
    assert files, package
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imports_of(path)
        for forbidden in RULES[package]
        if _within(name, forbidden)
    }
    assert not offending, sorted(offending)


def test_the_rule_sees_relative_and_nested_imports(tmp_path, monkeypatch):
    """The checker itself: a relative import climbing out of the package, and one inside a function."""
    pkg = tmp_path / "trust"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from ..anchors import source\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert "anchors.source" in imports_of(pkg / "x.py")
