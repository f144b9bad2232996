"""Faces: detect (boxes + landmarks), align, embed; verify with calibrated thresholds (or a learned fusion with a
general image encoder's score); identify with unknown.

Backends register by name in ``FACE_DETECTORS`` / ``FACE_EMBEDDERS``; importing this package loads no model.
"""

from __future__ import annotations

from visrec.faces.align import TEMPLATE_112, align_face, apply_transform, umeyama
from visrec.faces.base import FACE_DETECTORS, FACE_EMBEDDERS, FaceDetector, FaceEmbedder, Faces
from visrec.faces.calibrate import (
    Calibration,
    auc,
    calibrate,
    distance_matrix,
    eer,
    pair_distances,
    roc,
    threshold_for_far,
)
from visrec.faces.fusion import ScoreFusion, face_crops, fit_fusion
from visrec.faces.gallery import FaceGallery, FaceMatch, build_gallery
from visrec.faces.pipeline import FacePipeline, create_face_pipeline

__all__ = [
    "FACE_DETECTORS", "FACE_EMBEDDERS", "TEMPLATE_112", "Calibration", "FaceDetector", "FaceEmbedder",
    "FaceGallery", "FaceMatch", "FacePipeline", "Faces", "ScoreFusion", "align_face", "apply_transform", "auc",
    "build_gallery", "calibrate", "create_face_pipeline", "distance_matrix", "eer", "face_crops", "fit_fusion",
    "pair_distances", "roc", "threshold_for_far", "umeyama",
]  # fmt: skip
