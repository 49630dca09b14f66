"""A missing peer or vector skips on a developer's machine and fails under CI, and no skip passes under CI.

Each case runs pytest itself (pytester) on a small test module with our plugin,
tests/prerequisites.py, loaded as tests/conftest.py loads it, once without CI
and once with ``CI=true``, and reads the outcomes and the exit status.
"""

from __future__ import annotations

import pytest

from .prerequisites import under_ci

CONFTEST = 'pytest_plugins = ("tests.prerequisites",)\n'

ABSENT_PEER = """
from tests.prerequisites import require_peer

def test_needs_a_peer():
    require_peer("directgw-no-such-peer")
"""

ABSENT_VECTORS = """
from tests.prerequisites import require_vectors

def test_needs_the_vectors(tmp_path):
    require_vectors(tmp_path / "shared" / "vectors" / "direct-ri")
"""

PRESENT_PEER = """
from tests.prerequisites import require_peer

def test_needs_python():
    assert require_peer("python3")
"""

SKIP_MARK = """
import pytest

@pytest.mark.skip(reason="someone's shortcut")
def test_skipped():
    pass

def test_passes():
    pass
"""

IMPORTORSKIP = """
import pytest

pytest.importorskip("directgw_no_such_module")

def test_never_collected():
    pass
"""

STRICT_XFAIL = """
import pytest

@pytest.mark.xfail(strict=True, raises=ZeroDivisionError, reason="known")
def test_known_failure():
    1 / 0
"""

NON_STRICT_XPASS = """
import pytest

@pytest.mark.xfail(reason="was broken once")
def test_passes_now():
    pass
"""


@pytest.mark.parametrize(
    ("module", "ci", "outcomes", "exit_code", "says"),
    [
        (ABSENT_PEER, False, {"skipped": 1}, pytest.ExitCode.OK, "directgw-no-such-peer is not installed"),
        (ABSENT_PEER, True, {"failed": 1}, pytest.ExitCode.TESTS_FAILED, "CI=true, so a missing prerequisite fails"),
        (ABSENT_VECTORS, False, {"skipped": 1}, pytest.ExitCode.OK, "a clone without ../shared"),
        (ABSENT_VECTORS, True, {"failed": 1}, pytest.ExitCode.TESTS_FAILED, "a clone without ../shared"),
        (PRESENT_PEER, True, {"passed": 1}, pytest.ExitCode.OK, "1 passed"),
        (SKIP_MARK, False, {"passed": 1, "skipped": 1}, pytest.ExitCode.OK, "someone's shortcut"),
        (SKIP_MARK, True, {"passed": 1, "skipped": 1}, pytest.ExitCode.TESTS_FAILED, "skipped tests fail the run"),
        (IMPORTORSKIP, False, {"skipped": 1}, pytest.ExitCode.NO_TESTS_COLLECTED, "directgw_no_such_module"),
        (IMPORTORSKIP, True, {"skipped": 1}, pytest.ExitCode.TESTS_FAILED, "skipped tests fail the run"),
        (STRICT_XFAIL, True, {"xfailed": 1}, pytest.ExitCode.OK, "1 xfailed"),
        (NON_STRICT_XPASS, True, {"xpassed": 1}, pytest.ExitCode.OK, "1 xpassed"),
    ],
    ids=[
        "peer-absent-skips", "peer-absent-fails-under-ci", "vectors-absent-skip", "vectors-absent-fail-under-ci",
        "peer-present-passes-under-ci", "skip-mark-passes", "skip-mark-fails-under-ci", "importorskip-passes",
        "importorskip-fails-under-ci", "strict-xfail-passes-under-ci", "non-strict-xpass-is-pytests-business",
    ],
)
def test_what_a_missing_prerequisite_does(pytester, monkeypatch, module, ci, outcomes, exit_code, says):
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(CONFTEST)
    # A conftest beside, not above, the module: pytest then builds a hook proxy without it, which puts every
    # plugin (the guard too) in a set, as the real tree's collection does.
    (pytester.mkdir("elsewhere") / "conftest.py").write_text("")
    pytester.makepyfile(test_case=module)
    # --assert=plain: tests.prerequisites is already imported here, so the inner run cannot rewrite it;
    # no:asyncio, no:hypothesispytest: these modules use neither; asyncio's configuration warning would reach
    # this test, and hypothesis's setup costs a second per run.
    result = pytester.runpytest("--assert=plain", "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:hypothesispytest", "-rs")
    result.assert_outcomes(**outcomes)
    assert result.ret == exit_code
    assert says in result.stdout.str()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("", False), ("false", False), ("0", False)],
    ids=["true", "upper", "one", "yes", "empty", "false", "zero"],
)
def test_which_ci_values_count(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert under_ci() is expected
