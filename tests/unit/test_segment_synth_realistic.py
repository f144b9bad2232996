"""Realistic generated scenes: strangers (things the index does not hold) are pasted and written apart, never as
objects to find; pictures redrawn in other styles with the style renderings, the style recorded per object and
drawn from the seed; box scoring counts a region named on a stranger as a false region, not a hit."""

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
from visrec.segment.box_eval import CocoScene, load_coco_scenes, match_boxes, score_results
from visrec.segment.masks import masks_to_boxes
from visrec.segment.rle import rle_to_mask
from visrec.segment.synth import STYLE_NAMES, SynthConfig, generate
from visrec.segment.types import Regions, SceneResult

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
STRANGE = {"yellow": (255, 255, 0), "magenta": (255, 0, 255)}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    tmp = tmp_path_factory.mktemp("src")
    return make_flat_items(tmp / "known", COLOURS), make_flat_items(tmp / "strange", STRANGE)


def _grey_photo() -> np.ndarray:
    """A background with no saturated pixel (grey levels only)."""
    return np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (200, 1, 3))


def _masks(coco: dict, key: str, image_id: int) -> list[tuple[dict, np.ndarray]]:
    return [(a, rle_to_mask(a["segmentation"])) for a in coco[key] if a["image_id"] == image_id]


def test_strangers_are_pasted_but_written_apart(sources: tuple, tmp_path: Path) -> None:
    items, strangers = sources
    # posterize, cartoon and blur leave a flat colour as it is, so every mask must hold its exact colour
    cfg = SynthConfig(width=320, height=200, objects=(3, 5), seed=3, stranger_share=0.4, styles=0.5,
                      style_names=("posterize", "cartoon", "blur"))  # fmt: skip
    coco = generate(items, tmp_path, 6, cfg, [_grey_photo()], strangers)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names.values()) == sorted(COLOURS)  # a stranger's class is no category to find
    assert coco["annotations"] and coco["strangers"]
    assert {s["label"] for s in coco["strangers"]} <= set(STRANGE)
    assert coco["info"]["stranger_labels"] == ["magenta", "yellow"]
    colour = {**{n: COLOURS[n] for n in COLOURS}, **STRANGE}
    for im in coco["images"]:
        pixels = np.asarray(Image.open(tmp_path / im["file_name"]).convert("RGB"))
        union = np.zeros(pixels.shape[:2], bool)
        for key in ("annotations", "strangers"):
            for a, mask in _masks(coco, key, im["id"]):
                label = names[a["category_id"]] if key == "annotations" else a["label"]
                assert (pixels[mask] == colour[label]).all() and a["area"] == int(mask.sum()) > 0
                x0, y0, x1, y1 = masks_to_boxes(mask[None])[0]
                assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]
                assert not (union & mask).any()  # objects and strangers hide each other like any pasted picture
                union |= mask
        saturated = pixels.max(axis=2) != pixels.min(axis=2)
        assert np.array_equal(saturated, union)  # everything pasted is in one of the two lists
    scenes = load_coco_scenes(tmp_path / "annotations.json")
    assert sum(len(s.strangers) for s in scenes) == len(coco["strangers"])
    assert all(set(s.labels) <= set(COLOURS) for s in scenes)


def test_every_object_a_stranger_leaves_nothing_to_find(sources: tuple, tmp_path: Path) -> None:
    items, strangers = sources
    coco = generate(items, tmp_path, 2, SynthConfig(width=160, height=120, seed=1, stranger_share=1.0), None, strangers)
    assert coco["annotations"] == [] and len(coco["strangers"]) >= 2


def test_styles_are_the_style_renderings_and_recorded(sources: tuple, tmp_path: Path) -> None:
    from visrec.train.styles import STYLES

    assert set(STYLE_NAMES) == set(STYLES) - {"none"}
    items, _ = sources
    cfg = SynthConfig(width=200, height=160, objects=(2, 3), seed=5, styles=1.0, style_names=("greyscale",))
    coco = generate(items, tmp_path, 3, cfg, [_grey_photo()])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for im in coco["images"]:
        pixels = np.asarray(Image.open(tmp_path / im["file_name"]).convert("RGB"))
        for a, mask in _masks(coco, "annotations", im["id"]):
            grey = int(np.asarray(Image.new("RGB", (1, 1), COLOURS[names[a["category_id"]]]).convert("L"))[0, 0])
            assert a["style"] == "greyscale" and (pixels[mask] == grey).all()


def test_styles_and_strangers_are_a_function_of_the_seed(sources: tuple, tmp_path: Path) -> None:
    items, strangers = sources
    cfg = SynthConfig(width=200, height=160, objects=(3, 5), seed=11, stranger_share=0.3, styles=0.6)
    a = generate(items, tmp_path / "a", 5, cfg, None, strangers)
    b = generate(items, tmp_path / "b", 5, cfg, None, strangers)
    c = generate(items, tmp_path / "c", 5, replace(cfg, seed=12), None, strangers)
    assert (a["annotations"], a["strangers"]) == (b["annotations"], b["strangers"])
    assert (a["annotations"], a["strangers"]) != (c["annotations"], c["strangers"])
    files = [im["file_name"] for im in a["images"]]
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    styles = {o["style"] for o in a["annotations"] + a["strangers"]}
    assert "none" in styles and len(styles - {"none"}) >= 2 and styles <= {"none", *STYLE_NAMES}
    plain = generate(items, tmp_path / "p", 2, replace(cfg, stranger_share=0.0, styles=0.0))
    assert plain["strangers"] == [] and {o["style"] for o in plain["annotations"]} == {"none"}


def test_stranger_sources_are_checked(sources: tuple, tmp_path: Path) -> None:
    items, strangers = sources
    with pytest.raises(BadInput, match="share the label"):
        generate(items, tmp_path, 1, SynthConfig(stranger_share=0.3), None, [*strangers, items[0]])
    with pytest.raises(BadInput, match="needs strangers"):
        generate(items, tmp_path, 1, SynthConfig(stranger_share=0.3))
    with pytest.raises(BadInput, match="stranger_share is 0"):
        generate(items, tmp_path, 1, SynthConfig(), None, strangers)
    with pytest.raises(BadInput, match="unknown style"):
        SynthConfig(styles=0.5, style_names=("oil",))
    with pytest.raises(BadInput, match="probabilities"):
        SynthConfig(styles=1.5)


def test_a_region_named_on_a_stranger_is_a_false_region_not_a_hit() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    strangers = np.array([[40, 0, 50, 10], [60, 0, 70, 10]], np.float32)
    found = np.array([[0, 0, 10, 10], [41, 0, 51, 10], [40, 0, 50, 11], [66, 0, 76, 10], [80, 0, 90, 10]], np.float32)
    c = match_boxes(found, ["a", "a", "b", "a", "a"], np.array([0.9, 0.8, 0.7, 0.6, 0.5]), truth, ["a", "b"], 0.5,
                    strangers)  # fmt: skip
    assert (c.objects, c.regions, c.matched, c.correct) == (2, 5, 1, 1)  # the strangers are not objects to find
    m = c.metrics()
    assert m["recall"] == 0.5 and m["precision"] == 0.2  # two regions on one stranger are both false;
    # one region beside the second stranger (IoU 0.25, 40 % of it inside) does not name it
    assert (m["strangers"], m["strangers_named"], m["stranger_regions"], m["strangers_named_share"]) == (2, 1, 2, 0.5)
    part = match_boxes(np.array([[62, 2, 66, 6]], np.float32), ["a"], np.ones(1), truth, ["a", "b"], 0.5, strangers)
    assert (part.strangers_named, part.stranger_regions) == (1, 1)  # a part of a stranger (its face) names it
    plain = match_boxes(found, ["a"] * 5, np.ones(5), truth, ["a", "b"], 0.5)
    assert plain.strangers == plain.strangers_named == 0 and plain.regions == 5


def test_a_stranger_named_after_an_indexed_class_is_a_false_presence(tmp_path: Path) -> None:
    scene = CocoScene(tmp_path / "s.png", np.array([[0, 0, 10, 10]], np.float32), ["a"],
                      np.array([[40, 0, 50, 10]], np.float32))  # fmt: skip
    boxes = np.array([[0, 0, 10, 10], [40, 0, 50, 10]], np.float32)
    regions = Regions(boxes, np.ones(2, np.float32))
    result = SceneResult(regions, ("a", "b"), ("a", "b"), np.array([0.9, 0.8], np.float32), 100, 100, {})
    rep = score_results([scene], [result], ["a", "b"])
    assert rep.metrics["correct_recall"] == 1.0 and rep.metrics["strangers_named"] == 1
    assert (rep.presence["tp"], rep.presence["fp"], rep.presence["fn"]) == (1, 1, 0)


def test_scene_gen_with_strangers_and_styles_command(sources: tuple, tmp_path: Path) -> None:
    from visrec.cli import app

    data = tmp_path / "data"
    for path, label in [*sources[0], *sources[1]]:
        (data / label).mkdir(parents=True)
        Image.open(path).save(data / label / "a.png")
    known = 'label in ["red", "green", "blue"]'
    args = ["scene-gen", str(data), "--where", known, "--out", str(tmp_path / "gen"), "--n", "3", "--seed", "2"]
    runner = CliRunner()
    res = runner.invoke(app, [*args, "--strangers", str(data), "--strangers-where", f"not ({known})",
                              "--stranger-share", "0.5", "--styles", "0.5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    coco = json.loads((tmp_path / "gen" / "annotations.json").read_text())
    assert coco["strangers"] and {s["label"] for s in coco["strangers"]} <= set(STRANGE)
    assert coco["info"]["config"]["stranger_share"] == 0.5 and coco["info"]["config"]["styles"] == 0.5
    assert "strangers" in " ".join(res.output.split())
    from visrec.encoders import create_encoder
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index
    from visrec.ops import open_dataset

    build_index(open_dataset(data, where=known), tmp_path / "idx.vrx", create_encoder("fake"), IndexConfig())
    rep = runner.invoke(app, ["scene-eval", str(tmp_path / "idx.vrx"), str(tmp_path / "gen"), "--json"])
    assert rep.exit_code == 0, rep.output
    metrics = json.loads(rep.output)["metrics"]
    assert metrics["strangers"] == len(coco["strangers"]) and metrics["objects"] == len(coco["annotations"])
    text = runner.invoke(app, ["scene-eval", str(tmp_path / "idx.vrx"), str(tmp_path / "gen")])
    out = " ".join(text.output.split())
    assert text.exit_code == 0 and "strangers named:" in out and f"of {len(coco['strangers'])} (" in out
    same = runner.invoke(app, ["scene-gen", str(data), "-o", str(tmp_path / "bad"), "--strangers", str(data)])
    assert same.exit_code != 0 and "share the label" in " ".join(same.output.split())
    lone = runner.invoke(app, [*args[:6], "--stranger-share", "0.2"])
    assert lone.exit_code != 0 and "need --strangers" in " ".join(lone.output.split())
