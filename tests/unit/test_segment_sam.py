"""Segment-Anything automatic masks: the pure filters on hand-made logits, and the whole generator on a tiny
randomly initialised SAM saved to and loaded from a checkpoint file (no real SAM weights exist here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from visrec.errors import BadInput, MissingWeights
from visrec.segment.masks import masks_to_boxes
from visrec.segment.sam_amg import SamArch, SamConfig, SamSegmenter, point_grid, select_masks, stability_scores

HAS_SAM = importlib.util.find_spec("segment_anything") is not None
TINY = SamArch(16, 2, 2, (1,), img_size=64, window_size=2, prompt_dim=16, decoder_depth=1, decoder_mlp_dim=32,
               decoder_heads=2, iou_hidden=16, mask_in_chans=4)  # fmt: skip
KEEP_ALL = {"pred_iou_thresh": -1e9, "stability_thresh": 0.0, "points_per_side": 4}


def test_point_grid_is_cell_centres() -> None:
    assert point_grid(2).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]


def _logits() -> np.ndarray:
    out = np.full((3, 20, 20), -5.0)
    out[0, 5:15, 5:15] = 5.0  # a crisp square
    out[1, 5:15, 5:14] = 5.0  # nearly the same square
    out[2, 0:10, 0:10] = 0.5  # a mask that vanishes when the threshold moves up by 1
    return out


def test_stability_is_iou_across_thresholds() -> None:
    assert stability_scores(_logits()).tolist() == [1.0, 1.0, 0.0]
    assert stability_scores(np.full((1, 4, 4), -3.0)).tolist() == [0.0]  # empty: not stable


def test_filters_and_nms_keep_one_crisp_square() -> None:
    cfg = SamConfig(pred_iou_thresh=0.5, stability_thresh=0.9)
    assert select_masks(_logits(), np.array([0.8, 0.9, 0.95]), cfg).tolist() == [1]  # best of the two squares
    assert select_masks(_logits(), np.array([0.8, 0.4, 0.95]), cfg).tolist() == [0]  # the other one under 0.5


def test_sam_and_mobilesam_select_the_same_candidates_from_the_same_logits() -> None:
    from visrec.segment.mobilesam import MobileSamConfig
    from visrec.segment.mobilesam_amg import describe, select_grid

    rng = np.random.default_rng(3)
    low = np.full((4, 3, 256, 256), -6.0, np.float32)
    for k in range(4):
        for j in range(3):
            x, y, w = rng.integers(0, 20, 3)
            low[k, j, y : y + 4 + w, x : x + 4 + w] = rng.choice([0.5, 6.0])  # crisp or unstable squares
    iou = rng.uniform(0.6, 1.0, (4, 3)).astype(np.float32)
    cfg = MobileSamConfig(pred_iou_thresh=0.7, stability_thresh=0.9, points_per_batch=4, skip_covered=False)
    frame = (48, 48)
    sam = select_masks(low[:, :, :48, :48].reshape(12, 48, 48), iou.reshape(-1), cfg)
    got = select_grid(lambda rows: describe(low[rows], iou[rows], frame, cfg.stability_offset),
                      np.zeros((4, 2)), (48, 48), frame, cfg)  # fmt: skip
    assert 0 < len(sam) < 12 and got.ids.tolist() == sam.tolist()


def test_missing_or_wrong_checkpoints_are_clear(tmp_path: Path) -> None:
    with pytest.raises(MissingWeights, match="checkpoint="):
        SamSegmenter()
    with pytest.raises(BadInput, match="unknown SAM arch"):
        SamConfig(arch="vit_x")
    if not HAS_SAM:
        pytest.skip("segment-anything (the sam extra) is not installed")
    with pytest.raises(MissingWeights, match="not found"):
        SamSegmenter(SamConfig(checkpoint=str(tmp_path / "nope.pth"), arch=TINY))
    import torch
    from safetensors.torch import save_file

    save_file({"image_encoder.pos_embed": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BadInput, match=r"other\.safetensors"):
        SamSegmenter(SamConfig(checkpoint=str(tmp_path / "other.safetensors"), arch=TINY))


@pytest.mark.skipif(not HAS_SAM, reason="segment-anything (the sam extra) is not installed")
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_tiny_sam_from_a_checkpoint_generates_masks(tmp_path: Path, suffix: str) -> None:
    import torch
    from safetensors.torch import save_file

    from visrec.segment.sam_amg import build_sam

    torch.manual_seed(0)
    model = build_sam(TINY)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / f"tiny{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    img = np.full((48, 80, 3), 30, np.uint8)
    img[10:30, 20:50] = 220
    direct = SamSegmenter(SamConfig(arch=TINY, **KEEP_ALL), model=model)
    loaded = SamSegmenter(SamConfig(checkpoint=str(path), arch=TINY, **KEEP_ALL))
    for seg in (direct, loaded):
        seg.set_image(img)
    a, b = direct.regions(), loaded.regions()
    assert a.masks is not None and b.masks is not None and len(a) >= 1
    assert a.masks.shape[1:] == (48, 80) and (a.masks == b.masks).all()  # the file holds the same model
    assert np.array_equal(a.xyxy, masks_to_boxes(a.masks)) and a.scores.dtype == np.float32
    strict = SamSegmenter(SamConfig(arch=TINY, points_per_side=4), model=model)
    strict.set_image(img)  # random weights predict low IoUs: the default filters keep nothing, cleanly
    assert len(strict.regions()) == 0 and strict.regions().masks is not None
