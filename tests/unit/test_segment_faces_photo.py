"""The ``faces`` segmenter with the real BlazeFace detector on a group photo of deepface_celebs.

Skipped without ``../shared/data/deepface_celebs`` or the faces extra (ai-edge-litert + mediapipe==0.10.21).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA
from visrec.data import load_image
from visrec.segment import create_segmenter
from visrec.segment.scene import SceneConfig, downscale

DATA = SHARED_DATA / "deepface_celebs"
SELFIE = DATA / "unlabeled_multiface" / "selfie-many-people.jpg"
pytestmark = pytest.mark.skipif(
    not SELFIE.is_file() or any(importlib.util.find_spec(m) is None for m in ("mediapipe", "ai_edge_litert")),
    reason=f"needs {DATA} (../shared beside the repository, or VISREC_SHARED), "
    "ai-edge-litert and mediapipe==0.10.21 (the faces extra)",
)


def test_the_group_selfie_gives_one_region_per_visible_face() -> None:
    image, _ = downscale(load_image(SELFIE), SceneConfig().long_side)  # what SceneAnalyzer hands the segmenter
    h, w = image.shape[:2]
    tight = create_segmenter("faces", margin=0.0)
    tight.set_image(image)
    seg = create_segmenter("faces")
    seg.set_image(image)
    regs = seg.regions()
    assert len(regs) == 7  # counted by eye: seven faces, three of them cut by the border or half hidden
    assert (regs.xyxy[:, :2] >= 0).all() and (regs.xyxy[:, 2] <= w).all() and (regs.xyxy[:, 3] <= h).all()
    assert (regs.scores >= 0.5).all() and (np.diff(regs.scores) <= 0).all()  # BlazeFace's floor; best first
    inner = tight.regions().xyxy
    assert len(inner) == 7
    assert ((inner[:, :2] >= regs.xyxy[:, :2]) & (inner[:, 2:] <= regs.xyxy[:, 2:])).all()  # the margin grows
