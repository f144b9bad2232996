"""Fixtures of the CLI end-to-end modules: a small labeled data folder and its index, per module.

A module that uses them names its classes in a module-level ``CLASSES`` tuple."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.cli_run import labeled_index


@pytest.fixture(scope="module")
def labeled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(data folder, index folder)`` of the module's ``CLASSES`` (:func:`tests.e2e.cli_run.labeled_index`)."""
    return labeled_index(tmp_path_factory, request.module.CLASSES)


@pytest.fixture(scope="module")
def data(labeled: tuple[Path, Path]) -> Path:
    return labeled[0]


@pytest.fixture(scope="module")
def index(labeled: tuple[Path, Path]) -> Path:
    return labeled[1]
