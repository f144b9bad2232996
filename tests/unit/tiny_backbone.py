"""A tiny random-weight CNN backbone for export tests: the real export path (``BackboneEncoder``), no real weights.

Importing this module does not import torch (the trunk imports it when built), so a process without torch can
build the same encoder and run its cached ONNX file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visrec.encoders.backbone import BackboneEncoder, BackboneSpec
from visrec.encoders.finetuned import LocalWeights


def tiny_trunk(weights_path: Path, input_size: int) -> Any:
    """Two strided convolutions (stages ``mid`` 6 and ``head`` 8 channels) and a 1000-way classifier, seed 0."""
    import torch
    from torch import nn

    from visrec.encoders.graph import Trunk

    class Tiny(Trunk):
        stage_names = ("mid", "head")

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1), nn.ReLU6())
            self.b = nn.Sequential(nn.Conv2d(6, 8, 3, 2, 1), nn.ReLU6())
            self.fc = nn.Linear(8, 1000)

        def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
            mid = self.a(x)
            head = self.b(mid)
            return [mid, head], self.fc(head.mean(dim=(2, 3)))

    return Tiny().eval()


def tiny_encoder(weights: Path) -> BackboneEncoder:
    """The tiny backbone as an image-only encoder (no bridge: no MiniLM weights needed), 32-px inputs, 14-d."""
    if not weights.is_file():
        weights.write_bytes(b"tiny backbone, random init with seed 0")
    spec = BackboneSpec(
        name="tiny",
        weights=LocalWeights(weights),  # type: ignore[arg-type]
        trunk="tests.unit.tiny_backbone:tiny_trunk",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        stages={"mid": 6, "head": 8},
        description="tiny random CNN (tests)",
        defaults={"input_size": 32, "stages": ("head", "mid")},
    )
    return BackboneEncoder(spec, bridge=False)
