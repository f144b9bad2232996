"""``visrec finetune`` and ``visrec reproject`` as a user runs them (fake encoder, synthetic images)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cli_run import run
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


def test_finetune_with_style_views_reports_them_and_refuses_bad_options(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_labeled_tree(data, ("amber", "blue", "crimson"), per_class=10, size=40)
    out, idx = tmp_path / "adapter", tmp_path / "base.vrx"
    res = visrec("finetune", str(data), "--method", "supcon", "--out", str(out), "--index", str(idx),
                 "--encoder", "fake", "--epochs", "3", "--dim", "8", "--style-views", "2",
                 "--styles", "greyscale,blur", "--json")  # fmt: skip
    got = json.loads(res.stdout)
    train_val = got["split"]["train"] + got["split"]["val"]
    assert got["style_views"]["images"] == train_val and got["style_views"]["views"] == 2 * train_val
    assert got["style_views"]["skipped"] == 0 and got["style_views"]["seconds"] >= 0
    assert "val_style_top1" in got["training"]["history"][0]
    info = json.loads((out / "adapter.json").read_text())["info"]
    assert info["config"]["style_views"] == 2 and info["config"]["styles"] == ["greyscale", "blur"]
    assert info["style_views"]["views"] == 2 * train_val

    bad = visrec("finetune", str(idx), "--out", str(tmp_path / "x"), "--style-views", "2", "--styles", "ink",
                 ok=False)  # fmt: skip
    assert bad.returncode != 0 and "unknown style(s) ['ink']" in bad.stderr and "Traceback" not in bad.stderr
    bad = visrec("finetune", str(idx), "--out", str(tmp_path / "y"), "--unfreeze", "2", "--style-views", "2",
                 ok=False)  # fmt: skip
    assert bad.returncode != 0 and "--views" in bad.stderr and "Traceback" not in bad.stderr


def test_finetune_refusals_name_the_index_and_the_fix(tmp_path: Path) -> None:
    one, three = tmp_path / "one", tmp_path / "three"
    make_labeled_tree(one, ("amber",), per_class=6, size=40)
    make_labeled_tree(three, ("amber", "blue", "crimson"), per_class=6, size=40)
    idx = tmp_path / "one.vrx"
    code, _, err = run("finetune", str(one), "--out", str(tmp_path / "a"), "--index", str(idx), "--encoder", "fake")
    assert code == 2 and f"{idx} holds 1 labeled class ('amber', 6 items)" in err
    assert "at least two labeled classes" in err and "Traceback" not in err
    unlabeled = tmp_path / "unlabeled.vrx"
    assert run("index", str(three), "--format", "unlabeled", "--out", str(unlabeled), "--encoder", "fake")[0] == 0
    code, _, err = run("finetune", str(unlabeled), "--out", str(tmp_path / "b"))
    assert code == 2 and f"{unlabeled} holds no labeled class among its 18 items" in err
    idx3 = tmp_path / "three.vrx"
    assert run("index", str(three), "--out", str(idx3), "--encoder", "fake")[0] == 0
    for extra in ((), ("--unfreeze", "1")):  # the head methods and the backbone path refuse alike
        code, _, err = run("finetune", str(idx3), "--out", str(tmp_path / "c"), "--split-field", "split", *extra)
        assert code == 2 and f"{idx3}: the train, val and test sides are empty" in err
        assert "no image has a value in field 'split'" in err and "--split-field" in err
