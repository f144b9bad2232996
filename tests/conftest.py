"""Fixtures shared by the test packages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One model cache folder per test session, shared by every test that exports or loads real models (each
    model is exported once per session)."""
    path = tmp_path_factory.getbasetemp() / "visrec-cache"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISREC_CACHE_DIR", str(path))
        yield path
