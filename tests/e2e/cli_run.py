"""Running the CLI in-process for the e2e tests, with its output flattened so that messages can be matched."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fixtures_images import make_labeled_tree
from visrec.cli import app


def run(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (whitespace collapsed: Rich wraps long lines)."""
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "2000"})  # no wrapping inside long paths
    return res.exit_code, " ".join(res.stdout.split()), " ".join(res.stderr.split())


def labeled_index(factory: pytest.TempPathFactory, classes: tuple[str, ...]) -> tuple[Path, Path]:
    """``(data folder, index folder)``: 6 small images per class, indexed with the fake encoder."""
    root = factory.mktemp("data")
    make_labeled_tree(root, classes, per_class=6, size=40)
    out = factory.mktemp("idx") / "idx.vrx"
    code, _, err = run("index", str(root), "--out", str(out), "--encoder", "fake")
    assert code == 0, err
    return root, out
