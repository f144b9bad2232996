"""The CLI end to end, as a user runs it: subprocesses, JSON output, exit codes (fake encoder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures_images import (
    class_colour,
    make_bad_images,
    make_labeled_tree,
    make_near_duplicate,
    noise_image,
)

CLASSES = ("amber", "blue", "crimson")


def visrec(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    res = subprocess.run(
        [sys.executable, "-m", "visrec.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )
    if ok:
        assert res.returncode == 0, res.stderr + res.stdout
    return res


def as_json(res: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(res.stdout)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_labeled_tree(root, CLASSES, per_class=10, size=48)
    make_bad_images(root / "amber")
    return root


def test_index_info_search_classify(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    rep = as_json(visrec("index", str(data), "--out", str(out), "--encoder", "fake", "--json"))
    assert rep["count"] == 30 and rep["added"] == 30
    assert rep["n_skipped"] == sum(len(v) for v in rep["skipped"].values()) >= 5
    assert {"empty", "truncated", "not-an-image", "too-large"} <= set(rep["skipped"])
    assert set(rep["calibration"]) == {"knn", "prototype", "linear"}

    info = as_json(visrec("info", str(out), "--json"))
    assert info["labels"] == {c: 10 for c in CLASSES} and info["calibrated_modes"] == ["knn", "linear", "prototype"]

    q = data / "crimson" / "crimson_4.jpg"
    hits = as_json(visrec("search", str(out), "--image", str(q), "-k", "3", "--json"))[0]["hits"]
    assert hits[0]["path"] == "crimson/crimson_4.jpg" and {h["labels"][0] for h in hits} == {"crimson"}
    filtered = as_json(visrec("search", str(out), "--image", str(q), "--where", 'label == "blue"', "--json"))
    assert {h["labels"][0] for h in filtered[0]["hits"]} == {"blue"}

    text = as_json(visrec("search", str(out), "--text", "blue", "-k", "4", "--json"))
    assert text["route"] == "labels" and [h["labels"] for h in text["hits"]] == [["blue"]] * 4

    fresh = tmp_path / "fresh.png"
    Image.fromarray(noise_image(48, seed=4242, base=class_colour(1, 3))).save(fresh)
    res = as_json(visrec("classify", str(out), str(fresh), "--json"))
    item = res["items"][0]
    assert item["label"] == "blue" and 0 <= item["calibrated"] <= 1

    human = visrec("classify", str(out), str(fresh)).stdout
    assert "blue" in human


def test_classify_labeled_dataset_prints_metrics(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    visrec("index", str(data), "--out", str(out), "--encoder", "fake")
    test = tmp_path / "test"
    make_labeled_tree(test, CLASSES, per_class=4, size=48, seed=9)
    res = as_json(visrec("classify", str(out), str(test), "--json"))
    s = res["summary"]
    assert s["n"] == 12 and s["top1_raw"] == 1.0
    assert 0 <= s["unknown_rate"] <= 0.5 and s["macro_f1"] > 0.5
    human = visrec("classify", str(out), str(test)).stdout
    assert "top-1" in human and "macro-F1" in human and "unknown" in human


def test_reindex_is_incremental(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    visrec("index", str(data), "--out", str(out), "--encoder", "fake")
    rep = as_json(visrec("index", str(data), "--out", str(out), "--json"))  # encoder taken from the index
    assert (rep["added"], rep["unchanged"]) == (0, 30)


def test_errors_have_exit_codes_and_messages(data: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = visrec("index", str(empty), "--out", str(tmp_path / "x.vrx"), "--encoder", "fake", ok=False)
    assert res.returncode == 2 and "empty" in res.stderr and "Traceback" not in res.stderr
    res = visrec("info", str(tmp_path / "missing.vrx"), ok=False)
    assert res.returncode == 2 and "missing.vrx" in res.stderr
    out = tmp_path / "idx.vrx"
    visrec("index", str(data), "--out", str(out), "--encoder", "fake")
    res = visrec("search", str(out), "--image", str(data / "amber" / "empty.jpg"), ok=False)
    assert res.returncode == 2 and "empty" in res.stderr
    res = visrec("search", str(out), "--image", str(data / "blue" / "blue_0.jpg"), "--where", "label ==", ok=False)
    assert res.returncode == 2 and "label ==" in res.stderr


def test_data_check_counts_images_with_no_split_value(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    paths = make_labeled_tree(root, CLASSES, per_class=3, size=48)
    rows = ["path,label,split"]
    for c, ps in paths.items():
        sides = zip(ps, ("train", "test", ""), strict=True)
        rows += [f"{p.relative_to(root).as_posix()},{c},{side}" for p, side in sides]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    res = as_json(visrec("data", "check", str(root), "--json"))
    assert res["splits"] == {"train": 3, "test": 3} and res["no_split"] == 3
    human = " ".join(visrec("data", "check", str(root)).stdout.split())
    assert "splits: train 3, test 3; 3 images with no split value" in human and "None" not in human
    (root / "manifest.csv").unlink()  # a folder tree without split folders: no image has a split value
    res = as_json(visrec("data", "check", str(root), "--json"))
    assert res["splits"] == {} and res["no_split"] == 9
    human = " ".join(visrec("data", "check", str(root)).stdout.split())
    assert "splits: none (no image has a value in field 'split')" in human and "None" not in human


def test_data_check_finds_leaks_and_writes_grouped_split(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    paths = make_labeled_tree(root, CLASSES, per_class=6, size=64)
    rows = ["path,label,split"]
    for c, ps in paths.items():
        for i, p in enumerate(ps):
            rows.append(f"{p.relative_to(root).as_posix()},{c},train")
            if i < 2:  # a near-duplicate of a train image put in test: a leak
                dup = make_near_duplicate(p, p.with_name(f"dup_{p.stem}.jpg"))
                rows.append(f"{dup.relative_to(root).as_posix()},{c},test")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    written = tmp_path / "grouped.csv"
    res = as_json(visrec("data", "check", str(root), "--write-split", str(written), "--json"))
    assert res["leakage"]["n_leaked"] == 6 and res["leakage"]["n_test"] == 6
    human = visrec("data", "check", str(root)).stdout
    assert "leakage: 6 of 6" in human
    check = as_json(
        visrec("data", "check", str(written), "--split-field", "grouped_split", "--train", "train", "--json")
    )
    assert check["leakage"]["n_leaked"] == 0 and check["leakage"]["n_test"] > 0
