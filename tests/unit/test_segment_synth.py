"""Generated scenes: what was pasted is what the COCO file says (boxes, masks, labels), deterministic by seed;
box-level scoring; per-label NMS that keeps touching objects apart; the scene-gen / scene-eval commands."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.fixtures_images import make_flat_items
from visrec.errors import BadInput
from visrec.segment.box_eval import load_coco_scenes, match_boxes
from visrec.segment.masks import masks_to_boxes
from visrec.segment.rle import rle_to_mask
from visrec.segment.scene import SceneConfig, resolve_overlaps
from visrec.segment.synth import CROWDED, SynthConfig, generate

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """One flat, pure-coloured image per label (sizes differ so aspect ratios are exercised)."""
    return make_flat_items(tmp_path_factory.mktemp("src"), COLOURS)


def _grey_photo() -> np.ndarray:
    """A background with no pure red, green or blue pixel (grey levels only)."""
    return np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (200, 1, 3))


@pytest.mark.parametrize("cfg", [SynthConfig(width=320, height=200, seed=3), replace(CROWDED, seed=4)])
def test_boxes_and_masks_are_exactly_what_was_pasted(
    items: list[tuple[str, str]], tmp_path: Path, cfg: SynthConfig
) -> None:
    coco = generate(items, tmp_path, 4, cfg, [_grey_photo()])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names.values()) == sorted(COLOURS)
    for im in coco["images"]:
        pixels = np.asarray(Image.open(tmp_path / im["file_name"]).convert("RGB"))
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        assert cfg.objects[0] - 3 <= len(anns) <= cfg.objects[1]  # a placement may fail, rarely
        union = np.zeros(pixels.shape[:2], bool)
        for a in anns:
            mask = rle_to_mask(a["segmentation"])
            assert mask.shape == pixels.shape[:2] and a["area"] == int(mask.sum()) > 0
            assert (pixels[mask] == COLOURS[names[a["category_id"]]]).all()  # the mask holds the pasted colour
            x0, y0, x1, y1 = masks_to_boxes(mask[None])[0]
            assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]  # the box is the visible mask's tight box
            assert not (union & mask).any()  # visible masks never overlap
            union |= mask
        coloured = np.isin(pixels.reshape(-1, 3) @ np.array([1, 256, 65536]), [255, 255 * 256, 255 * 65536])
        assert np.array_equal(coloured.reshape(union.shape), union)  # nothing pasted is missing from the masks


def test_scenes_are_a_function_of_the_seed(items: list[tuple[str, str]], tmp_path: Path) -> None:
    cfg = SynthConfig(width=160, height=120, objects=(2, 3), seed=7)
    a = generate(items, tmp_path / "a", 3, cfg)
    b = generate(items, tmp_path / "b", 3, cfg)
    c = generate(items, tmp_path / "c", 3, replace(cfg, seed=8))
    assert a["annotations"] == b["annotations"] != c["annotations"]
    files = [im["file_name"] for im in a["images"]]
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_crowded_scenes_hold_many_small_objects(items: list[tuple[str, str]], tmp_path: Path) -> None:
    coco = generate(items, tmp_path, 2, CROWDED)
    sides = [max(a["bbox"][2], a["bbox"][3]) for a in coco["annotations"]]
    assert len(sides) >= 20 and max(sides) <= 101 and np.median(sides) >= 40
    scenes = load_coco_scenes(tmp_path / "annotations.json")
    assert len(scenes) == 2 and scenes[0].path.is_file() and scenes[0].boxes.shape[1] == 4


def test_bad_configs_are_refused(items: list[tuple[str, str]], tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="side"):
        SynthConfig(side=(0.5, 0.2))
    with pytest.raises(BadInput, match="shape"):
        SynthConfig(shape="star")
    with pytest.raises(BadInput, match="no labelled image"):
        generate([], tmp_path, 1, SynthConfig())


def test_box_matching_counts_place_and_label_apart() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    found = np.array([[0, 0, 10, 10], [21, 0, 31, 10], [0, 0, 9, 10], [60, 0, 70, 10]], np.float32)
    c = match_boxes(found, ["a", "x", "a", "a"], np.array([0.9, 0.8, 0.7, 0.6]), truth, ["a", "b", "c"], 0.5)
    assert (c.objects, c.regions, c.matched, c.correct) == (3, 4, 2, 1)  # the duplicate on object 0 is a miss
    m = c.metrics()
    assert m["recall"] == round(2 / 3, 4) and m["precision"] == 0.5 and m["label_accuracy"] == 0.5


def test_touching_objects_of_one_label_stay_two_regions() -> None:
    boxes = np.array([[0, 0, 10, 10], [9, 0, 19, 10], [1, 0, 11, 10]], np.float32)  # two touch, one duplicates
    kept = resolve_overlaps(boxes, ["a", "a", "a"], np.array([0.9, 0.8, 0.7]), SceneConfig(merge_iou=0.3))
    assert kept == [0, 1]
    assert boxes[1].tolist() == [9, 0, 19, 10]  # never grown into a union box


def test_scene_gen_and_box_eval_commands(items: list[tuple[str, str]], tmp_path: Path) -> None:
    from visrec.cli import app
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index

    data = tmp_path / "data"
    for path, label in items:
        (data / label).mkdir(parents=True)
        Image.open(path).save(data / label / "a.png")
    runner = CliRunner()
    res = runner.invoke(app, ["scene-gen", str(data), "--out", str(tmp_path / "gen"), "--n", "2", "--seed", "1"])
    assert res.exit_code == 0, res.output
    coco = json.loads((tmp_path / "gen" / "annotations.json").read_text())
    assert len(coco["images"]) == 2 and coco["annotations"]
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = runner.invoke(app, ["scene-gen", str(data), "-o", str(tmp_path / "g"), "--backgrounds", str(empty)])
    assert bad.exit_code != 0 and "no image file found" in " ".join(bad.output.split())
    build_index(load_dataset(data), tmp_path / "idx.vrx", create_encoder("fake"), IndexConfig())
    res = runner.invoke(app, ["scene-eval", str(tmp_path / "idx.vrx"), str(tmp_path / "gen"), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["scenes"] == 2 and rep["metrics"]["objects"] == len(coco["annotations"])
