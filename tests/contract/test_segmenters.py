"""Every registered segmenter honours the same contract on synthetic images with known shapes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_images import make_labeled_tree
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import MissingExtra, MissingWeights, StageOrderError
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.segment import SEGMENTERS, Segmenter, create_segmenter
from visrec.segment.masks import box_ioa


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    tmp: Path = tmp_path_factory.mktemp("seg")
    make_labeled_tree(tmp / "data", ("red", "blue"), per_class=6, size=40)
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", create_encoder("fake"), IndexConfig())
    return Index(tmp / "idx.vrx")


FINDS_ANY_SHAPE = {
    "proposals",
    "gallery",
    "mobilesam",
}  # class-agnostic backends; a COCO detector need not box a square
FINDS_NO_FACE = {"faces"}  # face detectors: a flat square on a gray ground holds no face, so no region


def _tiny_sam() -> Segmenter:
    """SAM with a tiny random-init architecture (no SAM weights exist here) and filters that keep everything."""
    if importlib.util.find_spec("segment_anything") is None:
        pytest.skip("segment-anything (the sam extra) is not installed")
    from visrec.segment.sam_amg import SamArch, SamConfig, SamSegmenter, build_sam

    tiny = SamArch(16, 1, 2, (0,), img_size=64, window_size=2, prompt_dim=16, decoder_depth=1, decoder_mlp_dim=32,
                   decoder_heads=2, iou_hidden=16, mask_in_chans=4)  # fmt: skip
    cfg = SamConfig(arch=tiny, points_per_side=4, pred_iou_thresh=-1e9, stability_thresh=0.0)
    return SamSegmenter(cfg, model=build_sam(tiny))


def _make(name: str, index: Index, tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    options: dict[str, Any] = {"index": index} if name == "gallery" else {}
    if name == "sam":
        return _tiny_sam()
    if name == "mobilesam":
        options["points_per_side"] = 4  # the contract, not mask quality: 16 prompts instead of the default 256
    cache = tmp_path_factory.getbasetemp() / "visrec-cache"  # the session's cache: MobileSAM is exported once
    cache.mkdir(exist_ok=True)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("VISREC_CACHE_DIR", str(cache))
            return create_segmenter(name, **options)
    except (MissingWeights, MissingExtra) as e:  # weights installed apart (see the backend module docstring)
        pytest.skip(f"{name}: {e}")


def _square_scene() -> np.ndarray:
    img = np.full((120, 160, 3), 200, np.uint8)
    img[30:90, 50:110] = (20, 20, 220)
    return img


@pytest.mark.parametrize("name", SEGMENTERS.names())
def test_segmenter_contract(name: str, index: Index, tmp_path_factory: pytest.TempPathFactory) -> None:
    seg = _make(name, index, tmp_path_factory)
    assert isinstance(seg, Segmenter)
    with pytest.raises(StageOrderError, match="set_image"):
        seg.regions()
    seg.set_image(_square_scene())
    regs = seg.regions()
    assert regs.xyxy.dtype == np.float32 and regs.scores.shape == (len(regs),)
    assert (regs.xyxy[:, :2] >= 0).all() and (regs.xyxy[:, 2] <= 160).all() and (regs.xyxy[:, 3] <= 120).all()
    assert (regs.xyxy[:, 2:] > regs.xyxy[:, :2]).all()
    assert regs.masks is None or regs.masks.shape[1:] == (120, 160)
    if name in FINDS_ANY_SHAPE:  # some region covers most of the square (windows on a coarse grid: not exactly)
        assert box_ioa(np.array([[50, 30, 110, 90]], np.float32), regs.xyxy).max() > 0.6
    if name in FINDS_NO_FACE:
        assert len(regs) == 0, f"{name} found a face in a synthetic square: {regs.xyxy.tolist()}"
    assert seg.regions() is regs  # computed once, queried many times


@pytest.mark.parametrize("name", SEGMENTERS.names())
def test_segmenter_survives_a_tiny_image(name: str, index: Index, tmp_path_factory: pytest.TempPathFactory) -> None:
    seg = _make(name, index, tmp_path_factory)
    seg.set_image(np.zeros((3, 3, 3), np.uint8))
    assert len(seg.regions()) <= 1


def test_proposal_masks_match_the_square() -> None:
    seg = create_segmenter("proposals", masks=True)
    seg.set_image(_square_scene())
    regs = seg.regions()
    assert regs.masks is not None and regs.masks.shape == (len(regs), 120, 160)
    truth = np.zeros((120, 160), bool)
    truth[30:90, 50:110] = True
    inter = (regs.masks & truth).sum((1, 2))
    union = (regs.masks | truth).sum((1, 2))
    assert (inter / union).max() > 0.8  # the colour segment of the square is proposed with its mask
