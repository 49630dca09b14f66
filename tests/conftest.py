from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.http_servers import fetcher_fixture, http_fixture  # noqa: F401 -- loopback HTTP for every test

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RI_VECTORS = SHARED / "vectors" / "direct-ri"


@pytest.fixture
def ri_vectors() -> Path:
    """The Direct reference implementation's vectors, read in place from ../shared."""
    if not RI_VECTORS.is_dir():
        pytest.skip("../shared/vectors/direct-ri is absent: RI interoperability vectors not available")
    return RI_VECTORS


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return path
