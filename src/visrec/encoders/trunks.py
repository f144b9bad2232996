"""Torch trunks of the ImageNet CNN backbones (imported only to export them to ONNX).

Each trunk returns the feature maps of stages 5, 6, 7 and of the head, plus the model's own 1000 ImageNet
logits (classifier on average-pooled head features, as trained). See :mod:`visrec.encoders.graph`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from visrec.encoders.graph import Trunk
from visrec.errors import MissingExtra, MissingWeights

STAGES = ("stage5", "stage6", "stage7", "head")

# Per EfficientNet-Lite variant: index of the last block of stages 5, 6 and 7 among its MBConv blocks, with
# the block's width (Lite1/Lite2 are deeper, and Lite2 wider, than Lite0; the head is 1280 wide in all three).
LITE_TAPS = {
    "efficientnet-lite0": {10: 112, 14: 192, 15: 320},
    "efficientnet-lite1": {14: 112, 19: 192, 20: 320},
    "efficientnet-lite2": {14: 120, 19: 208, 20: 352},
}


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file (fine-tuned backbones) or a packaged ``.pth`` (tensors only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


class EfficientNetLiteTrunk(Trunk):
    """EfficientNet-Lite0/1/2 from ``efficientnet_lite_pytorch`` (ReLU6, no SE; ``set_swish()`` is never called)."""

    stage_names = STAGES

    def __init__(self, variant: str, weights_path: Path, input_size: int) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise MissingExtra("efficientnet-lite-pytorch", "export", f"Exporting {variant} to ONNX") from exc
        self.taps = LITE_TAPS[variant]
        # Static "same" padding is computed for this input size, as in the TF original.
        self.net = EfficientNet.from_name(variant, image_size=input_size)
        self.net.load_state_dict(load_state(weights_path), strict=True)
        blocks = self.net._blocks
        widths = {i: blocks[i]._block_args.output_filters for i in self.taps if i < len(blocks)}
        if widths != self.taps or len(blocks) != max(self.taps) + 1:
            raise MissingWeights(f"unexpected {variant} layout {widths}; expected {self.taps}")

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        maps = []
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in self.taps:
                maps.append(x)
        x = net._swish(net._bn1(net._conv_head(x)))
        maps.append(x)
        return maps, net._fc(x.mean(dim=(2, 3)))


def efficientnet_lite0_trunk(weights_path: Path, input_size: int) -> Trunk:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode."""
    return EfficientNetLiteTrunk("efficientnet-lite0", weights_path, input_size).eval()


def efficientnet_lite1_trunk(weights_path: Path, input_size: int) -> Trunk:
    """EfficientNet-Lite1 with its ImageNet weights, in eval mode."""
    return EfficientNetLiteTrunk("efficientnet-lite1", weights_path, input_size).eval()


def efficientnet_lite2_trunk(weights_path: Path, input_size: int) -> Trunk:
    """EfficientNet-Lite2 with its ImageNet weights, in eval mode."""
    return EfficientNetLiteTrunk("efficientnet-lite2", weights_path, input_size).eval()


# MobileNetV2 as in torchvision: (expansion t, output channels c, repeats n, first stride s).
_MBV2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_MBV2_TAPS = (13, 16, 17)  # index in ``features`` of the last block of stages 5, 6 and 7


def _conv_bn(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out), nn.ReLU6(inplace=False))


class _InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        self.use_res = stride == 1 and inp == out
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn(inp, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, out, 1, bias=False)]
        layers.append(nn.BatchNorm2d(out))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Trunk(Trunk):
    """torchvision's MobileNetV2 with the same module names, so its state dict loads with ``strict=True``."""

    stage_names = STAGES

    def __init__(self, weights_path: Path) -> None:
        super().__init__()
        blocks: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        inp = 32
        for t, c, n, s in _MBV2_SETTINGS:
            for i in range(n):
                blocks.append(_InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        blocks.append(_conv_bn(inp, 1280, 1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
        self.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True), strict=True)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        maps = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in _MBV2_TAPS:
                maps.append(x)
        maps.append(x)
        return maps, self.classifier(x.mean(dim=(2, 3)))


def mobilenet_v2_trunk(weights_path: Path, input_size: int) -> Trunk:
    """MobileNetV2 with torchvision's IMAGENET1K_V1 weights, in eval mode (any input size works)."""
    return MobileNetV2Trunk(weights_path).eval()
