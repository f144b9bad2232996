"""Scene analysis end to end with the fake encoder: coloured squares on a noise background, an index built
from noisy images of those colours; the squares are found, labelled, drawn and exported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.segment.draw import annotate
from visrec.segment.evaluate import evaluate_presence, presence_scores
from visrec.segment.masks import box_ioa
from visrec.segment.scene import SceneAnalyzer, SceneConfig, downscale

CLASSES = ("amber", "blue", "crimson", "green")
SQUARES = {"blue": (30, 40, 110, 120), "crimson": (150, 130, 230, 210)}  # xyxy in a 256 x 256 scene


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    tmp = tmp_path_factory.mktemp("scene")
    make_labeled_tree(tmp / "data", CLASSES, per_class=10, size=48)
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", create_encoder("fake"), IndexConfig())
    return Index(tmp / "idx.vrx")


def scene(size: int = 256) -> np.ndarray:
    img = np.full((size, size, 3), 128, np.uint8) + (noise_image(size, seed=5) // 8)
    for name, (x0, y0, x1, y1) in SQUARES.items():
        colour = class_colour(CLASSES.index(name), len(CLASSES))
        img[y0:y1, x0:x1] = noise_image((x1 - x0, y1 - y0), seed=x0, base=colour)
    return img


def test_squares_are_found_and_labelled(index: Index) -> None:
    res = SceneAnalyzer(index).analyze(scene())
    assert res.present() == {"blue", "crimson"}
    assert (res.width, res.height) == (256, 256)
    best: dict[str, float] = {}
    for lab, box in zip(res.labels, res.regions.xyxy, strict=True):  # most confident first
        ioa = float(box_ioa(box[None], np.array([SQUARES[str(lab)]], np.float32))[0, 0])
        assert ioa > 0.2  # every labelled box overlaps the square of its colour
        best.setdefault(str(lab), ioa)
    assert min(best.values()) > 0.5  # and the most confident one of each label sits on it
    assert len(res) == len(res.to_coco()["annotations"])
    json.dumps(res.to_coco())  # JSON-ready


def test_downscaled_analysis_reports_input_pixels(index: Index) -> None:
    big = np.asarray(Image.fromarray(scene()).resize((512, 512), Image.Resampling.NEAREST))
    res = SceneAnalyzer(index, config=SceneConfig(long_side=256)).analyze(big)
    assert res.present() == {"blue", "crimson"} and (res.width, res.height) == (512, 512)
    assert res.regions.xyxy.max() > 256  # boxes mapped back to the 512-px input
    small, factor = downscale(big, 256)
    assert small.shape == (256, 256, 3) and factor == 2.0


def test_annotated_image_is_a_new_image_of_the_input_size(index: Index, tmp_path: Path) -> None:
    img = scene()
    before = img.copy()
    res = SceneAnalyzer(index).analyze(img)
    out = annotate(img, res)
    assert out.size == (256, 256) and out.mode == "RGB"
    assert (img == before).all()  # the caller's array is untouched
    assert not (np.asarray(out) == img).all()  # something was drawn
    out.save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").size == (256, 256)


@pytest.mark.parametrize(
    "image",
    [np.full((64, 64, 3), 128, np.uint8), np.zeros((4, 5, 3), np.uint8), np.full((100, 80), 128, np.uint8)],
    ids=["blank", "tiny", "grayscale"],
)
def test_nothing_to_find_gives_an_empty_result(index: Index, image: np.ndarray) -> None:
    res = SceneAnalyzer(index).analyze(image)
    assert res.present() == set() and (res.height, res.width) == image.shape[:2]


def test_presence_scores_and_evaluation(index: Index, tmp_path: Path) -> None:
    per, micro = presence_scores([{"a"}, {"a", "b"}], [{"a", "b"}, {"a"}], ["a", "b"])
    assert per["a"]["recall"] == 1.0 and per["b"] == {**per["b"], "tp": 0, "fp": 1, "fn": 1}
    assert micro["precision"] == pytest.approx(2 / 3, abs=1e-4)
    Image.fromarray(scene()).save(tmp_path / "s1.png")
    (tmp_path / "s2.png").write_bytes((tmp_path / "s1.png").read_bytes())  # duplicate: scored once
    rep = evaluate_presence(SceneAnalyzer(index), tmp_path, {"s1.png": ["blue", "crimson"], "s2.png": ["amber"]})
    assert len(rep.scenes) == 1 and rep.micro["f1"] == 1.0
    with pytest.raises(BadInput, match="none of the"):
        evaluate_presence(SceneAnalyzer(index), tmp_path, {"missing.png": ["blue"]})


def test_scene_eval_command_takes_the_acceptance_rule(index: Index, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from visrec.cli.scene import app

    Image.fromarray(scene()).save(tmp_path / "s1.png")
    (tmp_path / "labels.json").write_text(json.dumps({"s1.png": ["blue", "crimson"]}))
    args = ["scene-eval", str(index.path), str(tmp_path), "--labels", str(tmp_path / "labels.json"), "--json"]
    for rule in ("relative", "calibrated"):
        res = CliRunner().invoke(app, [*args, "--accept", rule])
        assert res.exit_code == 0, res.output
        rep = json.loads(res.stdout)
        assert rep["scenes"][0]["found"] and set(rep["scenes"][0]["found"]) <= {"blue", "crimson"}
    bad = CliRunner().invoke(app, [*args, "--accept", "loose"])
    assert bad.exit_code != 0 and "accept" in bad.output


def test_confidence_rule_on_an_uncalibrated_index_uses_the_raw_floor(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path / "data", CLASSES, per_class=10, size=48)
    build_index(
        load_dataset(tmp_path / "data"), tmp_path / "raw.vrx", create_encoder("fake"), IndexConfig(calibrate=False)
    )
    raw = Index(tmp_path / "raw.vrx")
    assert raw.calibration("knn") is None
    res = SceneAnalyzer(raw, config=SceneConfig(accept="confidence", floor=0.0)).analyze(scene())
    same = SceneAnalyzer(raw, config=SceneConfig(accept="absolute", floor=0.0)).analyze(scene())
    assert res.labels == same.labels and res.present() >= {"blue", "crimson"}
    none = SceneAnalyzer(raw, config=SceneConfig(accept="confidence", floor=1.01)).analyze(scene())
    assert not none.present()
    # the open-set rule has no thresholds to decide with here: the raw floor again, not every region named
    cal = SceneAnalyzer(raw, config=SceneConfig(accept="calibrated", floor=0.0)).analyze(scene())
    assert cal.labels == same.labels
    assert not SceneAnalyzer(raw, config=SceneConfig(accept="calibrated", floor=1.01)).analyze(scene()).present()
