"""``visrec finetune`` and ``visrec reproject`` as a user runs them (fake encoder, synthetic images)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import visrec
from tests.fixtures_images import make_labeled_tree


def test_finetune_a_dataset_then_reproject_and_refuse_the_wrong_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_labeled_tree(data, ("amber", "blue", "crimson"), per_class=10, size=40)
    out, idx, new = tmp_path / "adapter", tmp_path / "base.vrx", tmp_path / "new.vrx"
    res = visrec("finetune", str(data), "--method", "supcon", "--out", str(out), "--index", str(idx),
                 "--encoder", "fake", "--epochs", "4", "--dim", "8", "--reproject", str(new), "--json")  # fmt: skip
    got = json.loads(res.stdout)
    assert {"top1", "macro_f1", "map_at_r"} <= set(got["before"]) and set(got["before"]) == set(got["after"])
    assert got["split"]["test"] > 0 and got["training"]["epochs"] >= 1
    assert (out / "adapter.safetensors").is_file() and json.loads((out / "adapter.json").read_text())["method"]
    assert got["reprojected"]["count"] == 30
    manifest = json.loads((new / "manifest.json").read_text())
    assert manifest["dim"] == 8 and manifest["encoder"]["name"] == "adapted" and manifest["count"] == 30

    # The re-projected index is not built by the adapter's base encoder: applying the adapter again is refused.
    bad = visrec("reproject", str(new), "--adapter", str(out), "--out", str(tmp_path / "twice.vrx"), ok=False)
    assert bad.returncode == 3 and "trained on vectors of encoder 'fake'" in bad.stderr.replace("\n", "")
    assert not (tmp_path / "twice.vrx").exists()
