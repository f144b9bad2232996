"""Style views for the head methods: the plan, encoding (missing files counted), the split, and their effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.unit.train_synthetic import synthetic_split
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.train import FinetuneConfig, LoopConfig, build_head, finetune, make_objective
from visrec.train.data import load_split
from visrec.train.heads import HeadSpec
from visrec.train.loop import _Epochs, project
from visrec.train.style_views import HEAD_STYLES, StyleViews, encode_style_views, style_plan
from visrec.train.styles import greyscale

TINT = [(200, 40, 40), (40, 170, 40), (40, 40, 200)]


def _picture(c: int, rng: np.random.Generator) -> Image.Image:
    """Class ``c``: a background near the class's colour and a white block at the class's place (two cues)."""
    bg = tuple(int(np.clip(b + rng.integers(-30, 31), 0, 255)) for b in TINT[c])
    im = Image.new("RGB", (48, 48), bg)
    x, y = (4, 18, 32)[c], int(rng.integers(4, 30))
    ImageDraw.Draw(im).rectangle([x, y, x + 12, y + 14], fill=(255, 255, 255))
    return im


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("styled")
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / "data" / f"k{c}").mkdir(parents=True)
        for i in range(16):
            _picture(c, rng).save(root / "data" / f"k{c}" / f"{i}.png")
    out = root / "idx.vrx"
    build_index(load_dataset(root / "data"), out, create_encoder("fake", dim=32), IndexConfig(calibrate=False))
    return out


def test_plan_gives_each_image_different_styles_whatever_the_order() -> None:
    ids = [f"img{i}" for i in range(40)]
    plan = style_plan(ids, HEAD_STYLES, 4, seed=3)
    assert all(len({s for s, _ in p}) == 4 and all(k == 0 for _, k in p) for p in plan)
    assert len({tuple(p) for p in plan}) > 1  # not the same styles for every image
    assert style_plan(ids[::-1], HEAD_STYLES, 4, seed=3) == plan[::-1]
    cycled = style_plan(ids[:1], ("sketch", "cartoon"), 5, seed=0)[0]
    assert [k for _, k in cycled] == [0, 0, 1, 1, 2] and {cycled[0][0], cycled[1][0]} == {"sketch", "cartoon"}
    assert [s for s, _ in cycled] == [cycled[0][0], cycled[1][0]] * 2 + [cycled[0][0]]


def test_encoding_counts_views_and_skips_missing_files(tmp_path: Path) -> None:
    files: list[Path] = []
    for i in range(5):
        files.append(tmp_path / f"{i}.png")
        _picture(i % 3, np.random.default_rng(i)).save(files[-1])
    files[2].unlink()
    seen: list[tuple[int, int]] = []
    views = encode_style_views(create_encoder("fake", dim=16), files, [f"id{i}" for i in range(5)], np.arange(5),
                               ("greyscale", "blur", "sketch"), 2, seed=0,
                               progress=lambda stage, done, total: seen.append((done, total)))  # fmt: skip
    assert views.skipped == 1 and len(views.item) == 8 and views.vectors.shape == (8, 16)
    assert 2 not in views.item.tolist() and sorted(set(views.item.tolist())) == [0, 1, 3, 4]
    assert set(views.style.tolist()) <= {"greyscale", "blur", "sketch"} and seen[-1] == (4, 4)
    assert np.allclose(np.linalg.norm(views.vectors, axis=1), 1.0, atol=1e-5)


def test_views_train_only_with_their_own_image_side() -> None:
    data = synthetic_split()
    rng = np.random.default_rng(0)
    items = np.repeat(np.arange(len(data.ids)), 2)  # two views of every image, test images included
    vecs = rng.normal(size=(len(items), data.dim)).astype(np.float32)
    views = StyleViews(vecs, items, np.array(["sketch", "cartoon"] * len(data.ids)))
    head = build_head(HeadSpec(data.dim, 8), 0)
    run = _Epochs(head, make_objective("supcon", FinetuneConfig().loss, 4, 8), data, LoopConfig(), views)
    train = data.rows("train")
    assert len(run.x) == 3 * len(train)  # each train image and its two views; nothing of val or test
    allowed = np.concatenate([data.vectors[train], vecs[np.isin(items, train)]])
    got = run.x.numpy()
    assert np.abs(got[:, None, :] - allowed[None, :, :]).sum(axis=2).min(axis=1).max() == 0.0
    expected = np.concatenate([data.labels[train], data.labels[items[np.isin(items, train)]]])
    assert np.array_equal(run.y.numpy(), expected)
    figs, _ = run.validate()  # the val images' views are extra validation queries
    assert {"style_top1", "style_map_at_r"} <= set(figs)


def test_style_views_map_a_restyled_image_nearer_its_class(index: Path) -> None:
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), 10)
    queries = create_encoder("fake", dim=32).encode_images([greyscale(_picture(int(c), rng)) for c in truth]).vectors
    data = load_split(index)
    margins = {}
    for n in (0, 1):
        cfg = FinetuneConfig("supcon", 16, loop=LoopConfig(epochs=20, batch_size=32), style_views=n,
                             styles=("greyscale",))  # fmt: skip
        res = finetune(index, cfg)
        head = res.adapter.heads["image"]
        sims = project(head, queries) @ project(head, data.vectors).T
        y = np.array([int(data.classes[k][1]) for k in data.labels])
        margins[n] = np.mean([sims[i, y == t].mean() - sims[i, y != t].mean() for i, t in enumerate(truth)])
        if n:
            assert res.views is not None and res.views["views"] == res.views["images"] and res.views["skipped"] == 0
            assert res.adapter.info["config"]["style_views"] == 1
    # Photos alone teach the head the colour shortcut; greyscale views of the same items teach it the layout.
    assert margins[1] > margins[0] + 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"style_views": -1}, "between 0 and 32"),
        ({"style_views": 99}, "between 0 and 32"),
        ({"style_views": 2, "styles": ("sketch", "watercolour")}, r"unknown style\(s\) \['watercolour'\]"),
        ({"style_views": 2, "styles": ()}, "unknown style"),
        ({"style_views": 2, "method": "lit"}, "lit method does not take them"),
    ],
)
def test_bad_style_options_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        FinetuneConfig(**kwargs)
