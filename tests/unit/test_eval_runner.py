"""Evaluation end to end in the library: split and leakage guard, figures per mode, JSON and HTML report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from tests.fixtures_images import make_labeled_tree, make_near_duplicate
from visrec.errors import BadInput
from visrec.eval.outputs import write_report
from visrec.eval.runner import EvalConfig, evaluate
from visrec.eval.splits import plan_split
from visrec.index.inputs import open_dataset

CLASSES = ("amber", "blue", "crimson")
PER_CLASS = 8
TRAIN_PER_CLASS = 6


def make_eval_set(root: Path) -> Path:
    """``root/manifest.csv``: 3 colour classes, 6 train + 2 test images each, one test image being a
    near-duplicate of a train image (a leak), plus ``root/unknown/`` images of a fourth colour."""
    files = make_labeled_tree(root, CLASSES, per_class=PER_CLASS, size=48)
    leak = make_near_duplicate(files["blue"][0], root / "blue" / "blue_leak.jpg")
    make_labeled_tree(root / "unknown_tree", ("green",), per_class=4, size=48, seed=7)
    rows = [["path", "label", "split"]]
    for name, paths in files.items():
        rows += [[p.relative_to(root).as_posix(), name, "train" if i < TRAIN_PER_CLASS else "test"]
                 for i, p in enumerate(paths)]  # fmt: skip
    rows.append([leak.relative_to(root).as_posix(), "blue", "test"])
    with (root / "manifest.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_eval_set(tmp_path_factory.mktemp("evalset"))


@pytest.fixture(scope="module")
def result(eval_set: Path) -> dict:
    plan = plan_split(open_dataset(eval_set), "split", ["train"], ["test"])
    unknown = tuple(sorted((eval_set.parent / "unknown_tree" / "green").glob("*.jpg")))
    cfg = EvalConfig(modes=("knn", "prototype"), encoders=("fake",), unknown=unknown, latency_queries=4)
    return evaluate(str(eval_set), plan, cfg)


def test_leaky_split_is_flagged_with_count_and_fix(eval_set: Path) -> None:
    plan = plan_split(open_dataset(eval_set), "split", ["train"], ["test"])
    assert len(plan.train) == 3 * TRAIN_PER_CLASS and len(plan.test) == 3 * 2 + 1
    assert plan.n_leaked == 1
    (warning,) = plan.warnings("DATA")
    assert "1 of 7 test images" in warning and "--split-field auto" in warning


def test_auto_split_keeps_near_duplicates_together(eval_set: Path) -> None:
    plan = plan_split(open_dataset(eval_set), "auto")
    assert plan.n_leaked == 0 and plan.warnings("DATA") == []
    sides = {r.path: side for side, ds in (("train", plan.train), ("test", plan.test)) for r in ds.records}
    assert sides["blue/blue_leak.jpg"] == sides["blue/blue_0.jpg"]
    assert len(plan.train) + len(plan.test) == 3 * PER_CLASS + 1


def test_a_leaky_grouped_split_column_points_to_regroup(eval_set: Path) -> None:
    """A manifest's own grouped_split can leak by visrec's hash: the advice is a split visrec cuts itself."""
    from dataclasses import replace as _replace

    ds = open_dataset(eval_set)
    ds = ds.subset([_replace(r, extra={**r.extra, "grouped_split": r.split}) for r in ds.records])
    plan = plan_split(ds, "auto")
    assert plan.field == "grouped_split" and plan.n_leaked == 1
    (warning,) = plan.warnings("DATA")
    assert "--split-field regroup" in warning
    fixed = plan_split(ds, "regroup")
    assert fixed.n_leaked == 0 and fixed.warnings("DATA") == []


def test_bad_split_field_names_the_values(eval_set: Path) -> None:
    with pytest.raises(BadInput, match="values present"):
        plan_split(open_dataset(eval_set), "split", ["nope"], ["test"])


def test_figures_per_mode(result: dict) -> None:
    (enc,) = result["encoders"]
    assert enc["encoder"] == "fake" and enc["queries"] == 7 and enc["gallery"] == 18
    assert set(enc["modes"]) == {"knn", "prototype"}
    knn = enc["modes"]["knn"]
    cls = knn["classification"]
    assert cls["top1_raw"] >= 6 / 7  # colour classes: the fake encoder separates them
    assert [len(r) for r in cls["confusion"]] == [4, 4, 4] and sum(map(sum, cls["confusion"])) == 7
    assert len(knn["coverage"]["coverage"]) == 7
    assert knn["open_set"]["n_unknown"] == 4 and knn["open_set"]["n_known"] == 7
    assert knn["latency"]["p95_ms"] >= knn["latency"]["p50_ms"] > 0
    pts = knn["trade_off"]["points"]
    assert knn["trade_off"]["default"] in [p["target"] for p in pts]
    assert pts[0]["known_answered"] >= pts[-1]["known_answered"]  # asking more precision answers less
    # the best threshold on the test stream answers less as more precision is asked; unknowns carry reasons
    best = [p["best_known_answered"] for p in pts]
    assert all(0.0 <= b <= 1.0 for b in best) and best == sorted(best, reverse=True)
    reasons = knn["trade_off"]["unknown_reasons"]
    default = next(p for p in pts if p["target"] == knn["trade_off"]["default"])
    assert sum(reasons.values()) == pytest.approx(1 - default["known_answered"])
    r = enc["retrieval"]
    assert r["top1"] >= 6 / 7 and 0 <= r["score_1000"] <= 1000 and len(r["cmc"]) >= 10
    assert enc["index_bytes"] > 0 and enc["peak_rss_mb"] > 0
    assert [(row["encoder"], row["mode"]) for row in result["table"]] == [("fake", "knn"), ("fake", "prototype")]


def test_report_files(result: dict, tmp_path: Path) -> None:
    written = write_report(result, tmp_path / "rep")
    data = json.loads(Path(written["json"]).read_text())
    assert data["schema"] == "visrec.eval/1" and data["split"]["n_leaked"] == 1
    page = Path(written["html"]).read_text()
    assert page.index("LEAKAGE") < page.index("Comparison")  # the warning is at the top
    plots = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', page)
    assert len(plots) == 2 * 2 + 4  # confusion + per-class per mode, coverage, PR, CMC, precision/coverage trade-off
    assert page.count("default") >= 2  # the trade-off table marks the calibrated operating point of each mode
    assert "best threshold answers" in page
    assert len(list((tmp_path / "rep" / "plots").glob("*.png"))) == len(plots)
