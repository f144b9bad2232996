"""MobileSAM's automatic-mask selection without the model: filters, NMS, skipping covered points, the point
budget and the final cap, on hand-made decoder outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from visrec.segment.mobilesam_amg import Candidates, describe, final_keep, passing, select_grid

FRAME = (32, 32)


@dataclass(frozen=True)
class Opts:
    points_per_batch: int = 2
    skip_covered: bool = True
    pred_iou_thresh: float = 0.5
    stability_thresh: float = 0.5
    stability_offset: float = 1.0
    nms_iou: float = 0.7


def _logits(box: tuple[int, int, int, int], inside: float = 8.0) -> np.ndarray:
    """A 256 x 256 logit map: ``inside`` on the xyxy box (low-res pixels), -8 elsewhere."""
    low = np.full((256, 256), -8.0, np.float32)
    x0, y0, x1, y1 = box
    low[y0:y1, x0:x1] = inside
    return low


def test_describe_measures_stability_and_boxes_inside_the_frame() -> None:
    low = np.stack([_logits((2, 3, 10, 12)), _logits((0, 0, 4, 4), inside=0.5), _logits((40, 40, 50, 50))])[None]
    c = describe(low, np.array([[0.9, 0.8, 0.7]], np.float32), FRAME, 1.0)
    assert c.boxes[0, 0].tolist() == [2, 3, 10, 12]
    assert c.stability[0, 0] == 1.0  # +-1 logit does not move an 8-logit mask
    assert c.stability[0, 1] == 0.0  # a mask at 0.5 logits vanishes at +1: unstable
    assert c.boxes[0, 2].tolist() == [0, 0, 0, 0]  # outside the frame: padding, an empty mask


def test_passing_applies_both_thresholds_drops_empty_masks_and_duplicates() -> None:
    iou = np.array([0.9, 0.4, 0.9, 0.8, 0.95])
    stab = np.array([0.9, 0.9, 0.3, 0.9, 0.9])
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5], [1, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    # row 1: low predicted IoU; row 2: unstable; row 3: a near-duplicate of row 0; row 4: empty
    assert passing(iou, stab, boxes, Opts()).tolist() == [0]
    assert passing(iou, stab, boxes, Opts(pred_iou_thresh=0.3, stability_thresh=0.0)).tolist() == [0, 2, 1]


def _grid_case() -> tuple[np.ndarray, Candidates]:
    """Four points on a 32 x 32 image (frame 32 x 32): points 0, 2 and 3 lie on one square object, point 1
    on another; each point's first candidate is its object's mask, the other two are weak."""
    points = np.array([[5.0, 5.0], [25.0, 25.0], [6.0, 6.0], [7.0, 7.0]])
    a, b = _logits((0, 0, 12, 12)), _logits((20, 20, 30, 30))
    low = np.stack([np.stack([m, m, m]) for m in (a, b, a, a)])
    iou = np.tile(np.array([0.9, 0.3, 0.3], np.float32), (4, 1))
    return points, describe(low, iou, FRAME, 1.0)


def _decoder(cands: Candidates, calls: list[list[int]]):  # type: ignore[no-untyped-def]
    def decode(rows: np.ndarray) -> Candidates:
        calls.append(rows.tolist())
        return Candidates(cands.low[rows], cands.iou[rows], cands.stability[rows], cands.boxes[rows])

    return decode


def test_points_inside_kept_masks_are_not_decoded() -> None:
    points, cands = _grid_case()
    calls: list[list[int]] = []
    sel = select_grid(_decoder(cands, calls), points, (32, 32), FRAME, Opts())
    assert calls == [[0, 1]]  # points 2 and 3 fall inside the first object's kept mask
    assert sel.decoded == 2 and sorted(sel.ids.tolist()) == [0, 3]  # candidate 0 of points 0 and 1
    calls.clear()
    sel = select_grid(_decoder(cands, calls), points, (32, 32), FRAME, Opts(skip_covered=False))
    assert calls == [[0, 1], [2, 3]] and sel.decoded == 4
    keep = final_keep(sel.low, sel.scores, FRAME, 0.7, 10)
    assert len(keep) == 2  # the repeats of the first object are pruned at the end


def test_a_prompted_cover_skips_points_and_the_final_cap_keeps_the_best() -> None:
    points, cands = _grid_case()
    calls: list[list[int]] = []
    cover = np.zeros(FRAME, bool)
    cover[20:30, 20:30] = True  # a prompted mask already covers the second object
    sel = select_grid(_decoder(cands, calls), points, (32, 32), FRAME, Opts(), cover)
    assert calls == [[0]]  # point 1 lies in the prompted cover, points 2 and 3 in the mask kept for point 0
    scores = np.array([0.5, 0.9], np.float32)
    low = np.stack([_logits((0, 0, 12, 12)), _logits((20, 20, 30, 30))])
    assert final_keep(low, scores, FRAME, 0.7, 1).tolist() == [1]
    assert sel.decoded == 1 and sel.ids.tolist() == [0]


def test_an_empty_grid_selects_nothing() -> None:
    _, cands = _grid_case()
    sel = select_grid(_decoder(cands, []), np.zeros((0, 2)), (32, 32), FRAME, Opts())
    assert len(sel.ids) == 0 and sel.low.shape == (0, 256, 256) and sel.decoded == 0


def test_max_points_is_checked() -> None:
    from visrec.errors import BadInput
    from visrec.segment.mobilesam import MobileSamConfig

    with pytest.raises(BadInput, match="max_points"):
        MobileSamConfig(max_points=-1)


def _scene_with_a_large_mask() -> tuple[np.ndarray, Candidates]:
    """A 32 x 32 image whose first point (visited first, coarse to fine) lands on a large region that
    contains a small object, as a table under a bottle or a wall behind a person: its confident mask covers
    the point that lies on the object. The object's own mask is kept only if that point is decoded."""
    points = np.array([[16.0, 16.0], [6.0, 6.0]])
    large, small = _logits((0, 0, 32, 32)), _logits((4, 4, 9, 9))
    low = np.stack([np.stack([large, large, large]), np.stack([small, large, large])])
    iou = np.array([[0.97, 0.2, 0.2], [0.9, 0.2, 0.2]], np.float32)
    return points, describe(low, iou, FRAME, 1.0)


def test_the_default_keeps_an_object_inside_a_large_mask_that_skipping_covered_points_loses() -> None:
    from dataclasses import replace

    from visrec.segment.mobilesam import MobileSamConfig

    points, cands = _scene_with_a_large_mask()
    small = 3  # point 1, output 0
    # one point per batch: the object's point is visited after the large mask is kept (in a real grid the
    # coarse points fill the first batches)
    default = replace(MobileSamConfig(), points_per_batch=1)
    sel = select_grid(_decoder(cands, []), points, (32, 32), FRAME, default)
    keep = final_keep(sel.low, sel.scores, FRAME, default.nms_iou, default.max_regions)
    assert small in sel.ids[keep].tolist()
    former = replace(default, skip_covered=True)  # the former default skipped points inside kept masks
    assert small not in select_grid(_decoder(cands, []), points, (32, 32), FRAME, former).ids.tolist()


def test_the_default_nms_keeps_a_part_beside_its_whole() -> None:
    from visrec.segment.mobilesam import MobileSamConfig

    # a person (boxed 0..20 x 0..30) and the same person without the legs (0..20 x 0..24): box IoU 0.8
    iou = np.array([0.95, 0.92])
    stab = np.array([0.99, 0.99])
    boxes = np.array([[0, 0, 20, 30], [0, 0, 20, 24]], np.float32)
    assert passing(iou, stab, boxes, MobileSamConfig()).tolist() == [0, 1]
    assert passing(iou, stab, boxes, Opts(nms_iou=0.7)).tolist() == [0]  # the former NMS threshold
