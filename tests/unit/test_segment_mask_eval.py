"""Segmentation quality against ground-truth masks: polygons rasterise where they should, best overlaps are
right on hand-made cases, and the proposals backend finds real objects in the VOC smoke-test photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.shared_data import SHARED_DATA
from visrec.errors import BadInput
from visrec.segment import create_segmenter
from visrec.segment.mask_eval import best_overlaps, evaluate_masks, load_coco_instances, polygons_to_mask

VOC = SHARED_DATA / "voc_labelme_mini" / "annotations_coco.json"


def test_polygon_rasterises_to_its_square() -> None:
    m = polygons_to_mask([[10, 20, 40, 20, 40, 50, 10, 50]], 64, 64)
    assert m.shape == (64, 64) and m[30, 25] and not m[5, 5]
    assert 900 <= m.sum() <= 31 * 31  # 30 x 30, edges inclusive


def test_best_overlap_per_truth_mask() -> None:
    truth = np.zeros((2, 10, 10), bool)
    truth[0, :5, :5] = True
    truth[1, 5:, 5:] = True
    pred = np.zeros((2, 10, 10), bool)
    pred[0, :5, :5] = True  # exact on the first object
    pred[1, 5:, 5:8] = True  # 15 of the second's 25 pixels
    assert best_overlaps(pred, truth) == pytest.approx([1.0, 0.6])
    assert best_overlaps(pred[:0], truth).tolist() == [0.0, 0.0]


def _coco(tmp: Path) -> Path:
    img = np.full((96, 128, 3), 210, np.uint8)
    img[20:70, 30:90] = (200, 30, 30)
    Image.fromarray(img).save(tmp / "red.png")
    poly = [30, 20, 90, 20, 90, 70, 30, 70]
    data = {
        "images": [{"id": 0, "file_name": "JPEGImages/red.png", "height": 96, "width": 128}],
        "annotations": [{"id": "0", "image_id": "0", "category_id": "1", "segmentation": json.dumps([poly])}],
        "categories": [{"id": 1, "name": "square"}],
    }
    (tmp / "ann.json").write_text(json.dumps(data))
    return tmp / "ann.json"


def test_proposals_find_a_synthetic_object(tmp_path: Path) -> None:
    images = load_coco_instances(_coco(tmp_path))  # labelme's all-string fields, file found by its base name
    assert images[0].categories == ("square",) and images[0].masks.shape == (1, 96, 128)
    rep = evaluate_masks(create_segmenter("proposals", masks=True), images)
    assert rep.objects[0]["best_iou"] > 0.8 and rep.recall_50 == 1.0


def test_unreadable_annotations_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(BadInput, match=r"bad\.json"):
        load_coco_instances(tmp_path / "bad.json")


def test_rle_masks_of_generated_scenes_are_read(tmp_path: Path) -> None:
    from visrec.segment.rle import mask_to_rle

    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "scene.png")
    truth = np.zeros((40, 60), bool)
    truth[5:25, 10:50] = True
    truth[12:16, 20:30] = False  # a hole: the RLE must carry it
    ann = {"id": 7, "image_id": 1, "category_id": 1, "segmentation": mask_to_rle(truth)}
    data = {"images": [{"id": 1, "file_name": "scene.png", "height": 40, "width": 60}], "annotations": [ann]}
    (tmp_path / "annotations.json").write_text(json.dumps(data | {"categories": [{"id": 1, "name": "thing"}]}))
    images = load_coco_instances(tmp_path / "annotations.json")
    assert images[0].categories == ("thing",) and (images[0].masks[0] == truth).all()
    ann["segmentation"] = mask_to_rle(truth[:30])  # an RLE of another size than its image
    (tmp_path / "annotations.json").write_text(json.dumps(data | {"categories": [{"id": 1, "name": "thing"}]}))
    with pytest.raises(
        BadInput, match=r"annotations\.json: annotation 7 has an RLE mask of 60x30 on an image of 60x40"
    ):
        load_coco_instances(tmp_path / "annotations.json")


@pytest.mark.skipif(not VOC.is_file(), reason="voc_labelme_mini is not present")
def test_voc_smoke_photos() -> None:
    images = load_coco_instances(VOC)
    assert sum(len(i.categories) for i in images) == 12  # as the data's README counts
    rep = evaluate_masks(create_segmenter("proposals", masks=True), images)
    ious = {(o["file"], o["area"]): o["best_iou"] for o in rep.objects}
    big = [iou for (_f, area), iou in ious.items() if area > 10_000]
    assert min(big) > 0.2 and rep.mean_iou > 0.25  # every large object is at least partly segmented
