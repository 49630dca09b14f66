from __future__ import annotations

from tests.http_servers import fetcher_fixture, http_fixture  # noqa: F401 -- loopback HTTP for every test

# tests.prerequisites: a missing peer or vector skips, or fails under CI=true (and no skip passes under CI);
# it also holds the ri_vectors fixture. pytester: tests/test_prerequisites.py runs pytest itself to show that rule.
pytest_plugins = ("tests.prerequisites", "pytester")
