"""What some tests need from outside the project, and what happens when it is absent.

Some specifications can only be checked against something the project does not
ship: an independent peer (``openssl cms``, GnuPG's ``gpgsm``, Knot DNS,
OpenLDAP, PostgreSQL) or the Direct reference implementation's vectors, read
in place from ``../shared`` (shared/README.md: third-party files, never copied
into the project).

Where one is absent the rule is the same everywhere, so it lives here only:

- on a developer's machine or a newcomer's clone, the test skips, and the
  reason says what is missing and how to get it;
- under CI (``CI=true``: ``.ci/run`` exports it, and CI services set it), it
  fails. CI installs every peer and has ``../shared``, so a missing one means a
  broken runner, and a green run that quietly tested less is worse than a red one.

As a net under the rule, this module is also a pytest plugin (tests/conftest.py
loads it): under CI a run in which any test or module skipped, whatever the
reason (a ``skipif`` or ``importorskip`` added later, say), ends failed and
lists them. Expected failures are not skips: they must be strict (``strict=True``)
so that one that starts passing fails too.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RI_VECTORS = SHARED / "vectors" / "direct-ri"

_TRUE = frozenset({"true", "1", "yes"})

# Debian keeps daemons in sbin, which is not on every user's PATH.
_SBIN = (Path("/usr/sbin"), Path("/usr/bin"), Path("/sbin"))


def under_ci() -> bool:
    """CI=true (GitHub, GitLab and .ci/run set it; some services use 1)."""
    return os.environ.get("CI", "").strip().lower() in _TRUE


def unavailable(reason: str) -> NoReturn:
    """A prerequisite is missing: skip with the reason, or fail under CI."""
    if under_ci():
        pytest.fail(f"CI=true, so a missing prerequisite fails instead of skipping: {reason}", pytrace=False)
    pytest.skip(reason)


def require_peer(name: str) -> str:
    """The path of an independent peer's program (``openssl``, ``gpgsm``, ``kdig``, ``knotd``, ``slapd``...)."""
    found = shutil.which(name)
    if found is not None:
        return found
    for directory in _SBIN:
        candidate = directory / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    unavailable(
        f"{name} is not installed (its Debian package is in .ci/packages.txt; "
        "bash .ci/system-packages installs them as root)"
    )


def require_chromium() -> tuple[str, str]:
    """Debian's headless browser and its WebDriver, (chromium, chromedriver), for the browser test."""
    return require_peer("chromium"), require_peer("chromedriver")


def require_vectors(directory: Path = RI_VECTORS) -> Path:
    """The reference implementation's vectors, in place in ../shared/vectors/direct-ri."""
    if not (directory / "agent").is_dir() or not (directory / "gateway").is_dir():
        unavailable(
            f"{directory} is absent (a clone without ../shared): the Direct reference "
            "implementation's interoperability vectors are read from there, never copied"
        )
    return directory


@pytest.fixture
def ri_vectors() -> Path:
    """The Direct reference implementation's vectors, read in place from ../shared."""
    return require_vectors()


# ------------------------------------------------------------------ the net: no skip passes under CI


@dataclass(eq=False)  # hashable: pluggy keeps plugins in sets
class SkipGuard:
    """Collects every skip of one run; under CI, a run with any of them fails."""

    skipped: list[str] = field(default_factory=list)

    def _note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        # An xfail is reported as skipped with ``wasxfail`` set; strictness is enforced by pytest itself.
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skipped.append(f"{report.nodeid or '<collection>'}: {reason}")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # NO_TESTS_COLLECTED too: a module skipped whole at import leaves nothing collected.
        if self.skipped and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skipped:
            return
        terminalreporter.section("CI=true: skipped tests fail the run", sep="=", red=True, bold=True)
        for line in self.skipped:
            terminalreporter.line(line)


def pytest_configure(config: pytest.Config) -> None:
    if under_ci():
        config.pluginmanager.register(SkipGuard(), "directgw-skip-guard")


__all__ = ["RI_VECTORS", "SHARED", "SkipGuard", "require_chromium", "require_peer", "require_vectors", "ri_vectors",
           "unavailable", "under_ci"]
