"""The README's main job, `visrec demo`, on the real default encoder (slow: runs the pretrained model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared_data import SHARED_DATA

pytestmark = pytest.mark.slow


def _demo(tmp_path: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run(
        [sys.executable, "-m", "visrec.cli", "demo", "--out", str(tmp_path / "demo.vrx"), "--json", *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_demo_on_shipped_photos_recognises_and_searches(tmp_path: Path) -> None:
    res = _demo(tmp_path, "--sample")
    assert res["n_train"] == 48 and res["n_test"] == 48
    assert res["summary"]["top1_raw"] >= 0.9  # temple vs flower crops from unseen tiles
    assert res["summary"]["top1"] >= 0.7
    by_label, by_text = res["searches"]
    assert by_label["route"] == "labels"
    assert by_text["route"] == "joint"
    assert [h["labels"] for h in by_text["hits"]] == [["flower"]] * 5  # the ImageNet-label bridge at work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.vrx"]  # the sample photos live in the cache


def test_demo_on_naruto_beats_the_baseline(tmp_path: Path) -> None:
    from visrec.demo import find_shared_naruto

    naruto = SHARED_DATA / "naruto_roboflow"
    if find_shared_naruto() is None and not naruto.is_dir():
        pytest.skip(f"{naruto} is not there (../shared/data beside the repository, or set VISREC_SHARED)")
    # The demo finds ../shared by itself; a checkout elsewhere names the folder.
    res = _demo(tmp_path) if find_shared_naruto() is not None else _demo(tmp_path, "--data", str(naruto))
    assert res["split_rule"] == "manifest grouped_split" and res["n_test"] == 85
    assert res["summary"]["top1_raw"] > 0.976  # plain pooled EfficientNet-Lite0 features: 97.6 %
    assert res["summary"]["accepted_accuracy"] >= 0.95
