"""Classification stage: kNN vote, class prototypes, zero-shot prompts, their blend, and calibrated
thresholds that answer "unknown". Pure numpy over vectors and labels -> :class:`visrec.types.Prediction`.
"""

from __future__ import annotations

from visrec.classify.blend import BLEND_SCORES, BlendClassifier, BlendConfig
from visrec.classify.calibration import (
    Calibration,
    CalibrationOptions,
    calibrate_held_out,
    calibrate_leave_one_group_out,
)
from visrec.classify.knn import KNN_SCORES, KnnClassifier, KnnConfig
from visrec.classify.linear import LinearClassifier, LinearConfig
from visrec.classify.loo import Classifier
from visrec.classify.prototype import PrototypeClassifier, PrototypeConfig
from visrec.classify.thresholds import ClassThresholds, ConfidenceMap, fit_confidence, per_class_thresholds
from visrec.classify.zeroshot import (
    DEFAULT_TEMPLATES,
    ZEROSHOT_SCORES,
    ZEROSHOT_SCORINGS,
    ClassNames,
    ZeroShotClassifier,
    ZeroShotConfig,
    class_prompts,
    prompt_vectors,
)
from visrec.registry import Registry

CLASSIFIERS: Registry[Classifier] = Registry("classifier")
CLASSIFIERS.register("knn", KnnClassifier, help="similarity-weighted vote of the k nearest labeled neighbours")
CLASSIFIERS.register("prototype", PrototypeClassifier, help="cosine to per-class mean vectors")
CLASSIFIERS.register("zeroshot", ZeroShotClassifier, help="cosine to class-name text prompts (joint space)")
CLASSIFIERS.register("blend", BlendClassifier, help="text prompts blended with image prototypes")
CLASSIFIERS.register("linear", LinearClassifier, help="ridge linear probe on the labeled vectors")

__all__ = [
    "BLEND_SCORES",
    "CLASSIFIERS",
    "DEFAULT_TEMPLATES",
    "KNN_SCORES",
    "ZEROSHOT_SCORES",
    "ZEROSHOT_SCORINGS",
    "BlendClassifier",
    "BlendConfig",
    "Calibration",
    "CalibrationOptions",
    "ClassNames",
    "ClassThresholds",
    "Classifier",
    "ConfidenceMap",
    "KnnClassifier",
    "KnnConfig",
    "LinearClassifier",
    "LinearConfig",
    "PrototypeClassifier",
    "PrototypeConfig",
    "ZeroShotClassifier",
    "ZeroShotConfig",
    "calibrate_held_out",
    "calibrate_leave_one_group_out",
    "class_prompts",
    "fit_confidence",
    "per_class_thresholds",
    "prompt_vectors",
]
