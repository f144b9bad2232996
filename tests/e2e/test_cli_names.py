"""The CLI with a file name that is not valid UTF-8: it indexes, searches and classifies; human output shows the
undecodable byte as U+FFFD (stdout stays valid UTF-8 whatever the locale's error handler), JSON keeps it losslessly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_images import make_labeled_tree

FILE = os.fsdecode(b"img_\xff.jpg")


def visrec_bytes(*args: str, ioencoding: str) -> tuple[str, str]:
    """stdout and stderr of a successful run, decoded as strict UTF-8 (a stray byte fails the test)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200", "PYTHONIOENCODING": ioencoding}
    res = subprocess.run([sys.executable, "-m", "visrec.cli", *args], capture_output=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr.decode("utf-8", "replace")
    return res.stdout.decode("utf-8"), res.stderr.decode("utf-8")


@pytest.mark.parametrize("ioencoding", ["utf-8:surrogateescape", "utf-8:strict"])
def test_cli_prints_undecodable_names_with_replacement_characters(tmp_path: Path, ioencoding: str) -> None:
    root = tmp_path / "data"
    make_labeled_tree(root, ("amber", "blue"), per_class=5, size=48)
    (root / "blue" / "blue_2.jpg").rename(root / "blue" / FILE)
    (root / "amber" / os.fsdecode(b"broken_\xfe.jpg")).write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "idx.vrx"
    report, _ = visrec_bytes("index", str(root), "--out", str(out), "--encoder", "fake", ioencoding=ioencoding)
    assert ": 10 items" in report and "broken_\ufffd.jpg" in report
    query = str(root / "blue" / FILE)
    human, _ = visrec_bytes("search", str(out), "--image", query, "-k", "2", ioencoding=ioencoding)
    assert "blue/img_\ufffd.jpg" in human
    hits = json.loads(visrec_bytes("search", str(out), "--image", query, "--json", ioencoding=ioencoding)[0])
    assert hits[0]["hits"][0]["path"] == f"blue/{FILE}" and hits[0]["query"] == query
    human, _ = visrec_bytes("classify", str(out), query, ioencoding=ioencoding)
    assert "img_\ufffd.jpg" in human
