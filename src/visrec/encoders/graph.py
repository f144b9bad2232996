"""The torch graph exported for every ImageNet CNN backbone: retrieval features and logits in one forward.

Imported only while exporting (it imports torch). A *trunk* is a backbone that returns the feature maps
of its named stages plus the 1000 ImageNet logits; :class:`RetrievalGraph` pools the chosen stages,
L2-normalises each pooled block, concatenates and normalises again, optionally averaging with the
horizontally flipped image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Trunk(nn.Module):
    """Base class: ``forward(x) -> (maps, logits)`` with ``maps`` in the order of :attr:`stage_names`."""

    stage_names: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        raise NotImplementedError


def gem(x: torch.Tensor, p: float, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling of ``(n, c, h, w)`` maps to ``(n, c)``; p=1 is average, large p tends to max.

    Negative activations (linear-bottleneck stages) are clamped to ``eps`` first, as in Radenovic et al.
    """
    return x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class RetrievalGraph(nn.Module):
    """``forward(x (n, 3, s, s) float32) -> (features (n, d) unit rows, logits (n, 1000))``.

    ``stages``: names among the trunk's :attr:`Trunk.stage_names` whose pooled maps are concatenated.
    ``pooling``: ``"gem"`` (with exponent ``gem_p``) or ``"avg"``. ``flip``: average with the mirrored
    image (features: mean of the two unit vectors, renormalised; logits: mean). The logits always come from
    the model's own classifier on average-pooled features, as it was trained.
    """

    def __init__(self, trunk: Trunk, stages: Sequence[str], pooling: str, gem_p: float, flip: bool) -> None:
        super().__init__()
        self.trunk = trunk.eval()
        self.indices = [trunk.stage_names.index(s) for s in stages]
        self.pooling = pooling
        self.gem_p = float(gem_p)
        self.flip = flip

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "gem":
            return gem(x, self.gem_p)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip:
            x = torch.cat([x, torch.flip(x, dims=[3])], dim=0)
        maps, logits = self.trunk(x)
        parts = [F.normalize(self._pool(maps[i]), dim=1) for i in self.indices]
        features = F.normalize(torch.cat(parts, dim=1), dim=1)
        if self.flip:
            features = F.normalize(features.reshape(2, -1, features.shape[1]).sum(dim=0), dim=1)
            logits = logits.reshape(2, -1, logits.shape[1]).mean(dim=0)
        return features, logits
