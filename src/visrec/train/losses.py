"""Training objectives, passed into the loop as strategies: cross-entropy, ArcFace, triplet, InfoNCE, SupCon.

Every objective takes the batch's L2-normalised projections ``z`` ``(b, d)``, its integer ``labels`` ``(b,)`` and
the head (for its classifier), and returns a scalar loss. The metric-learning losses and miners are
pytorch-metric-learning's (``pytorch_metric_learning.losses`` / ``.miners``), not re-derivations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from visrec.errors import BadInput, MissingExtra
from visrec.train.heads import Head

CLASSIFIER_METHODS = ("linear", "mlp")
METRIC_METHODS = ("arcface", "triplet", "infonce", "supcon")
METHODS = CLASSIFIER_METHODS + METRIC_METHODS
MINERS = ("batch-hard", "semi-hard", "all")


class Objective(Protocol):
    """A loss strategy. ``parameters()`` lists its own trainable tensors (ArcFace's class centres)."""

    name: str

    def __call__(self, z: torch.Tensor, labels: torch.Tensor, head: Head) -> torch.Tensor: ...

    def parameters(self) -> list[nn.Parameter]: ...


@dataclass(frozen=True)
class LossOptions:
    """Loss settings; None means the method's default. ``margin``: ArcFace degrees (28.6) or triplet distance
    margin on unit vectors (0.2); ``scale``: ArcFace logit scale (32); ``temperature``: InfoNCE (0.1) and SupCon
    (0.1); ``miner``: triplet mining, one of ``MINERS``; ``label_smoothing``: cross-entropy (0.1)."""

    margin: float | None = None
    scale: float | None = None
    temperature: float | None = None
    miner: str = "semi-hard"
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.miner not in MINERS:
            raise BadInput(f"miner must be one of {', '.join(MINERS)}, got {self.miner!r}")
        if self.temperature is not None and not self.temperature > 0:
            raise BadInput(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise BadInput(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


def _pml() -> Any:
    try:
        import pytorch_metric_learning
    except ImportError:
        raise MissingExtra("pytorch-metric-learning", "train", "metric-learning fine-tuning") from None
    return pytorch_metric_learning


class CrossEntropy:
    """Softmax cross-entropy over the head's cosine classifier (``linear`` / ``mlp`` methods)."""

    name = "cross-entropy"

    def __init__(self, label_smoothing: float = 0.1) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, z: torch.Tensor, labels: torch.Tensor, head: Head) -> torch.Tensor:
        return nn.functional.cross_entropy(head.logits(z), labels, label_smoothing=self.label_smoothing)

    def parameters(self) -> list[nn.Parameter]:
        return []


class MetricLoss:
    """A pytorch-metric-learning loss, optionally fed the tuples a miner picks from the batch."""

    def __init__(self, name: str, loss: Any, miner: Any = None) -> None:
        self.name = name
        self.loss = loss
        self.miner = miner

    def __call__(self, z: torch.Tensor, labels: torch.Tensor, head: Head) -> torch.Tensor:
        tuples = None if self.miner is None else self.miner(z, labels)
        out: torch.Tensor = self.loss(z, labels, tuples)
        return out

    def parameters(self) -> list[nn.Parameter]:
        return list(self.loss.parameters())


def make_miner(name: str, margin: float = 0.2) -> Any:
    """pytorch-metric-learning miner: ``batch-hard`` (hardest positive and negative per anchor), ``semi-hard``
    (negatives farther than the positive but within ``margin``), or ``all`` (None: every triplet)."""
    _pml()
    from pytorch_metric_learning import miners

    if name == "batch-hard":
        return miners.BatchHardMiner()
    if name == "semi-hard":
        return miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")
    if name == "all":
        return None
    raise BadInput(f"miner must be one of {', '.join(MINERS)}, got {name!r}")


def make_objective(method: str, opts: LossOptions, n_classes: int, dim: int) -> Objective:
    """The loss strategy of ``method`` (one of ``METHODS``) for ``n_classes`` classes and ``dim``-wide vectors.

    Built under the caller's torch RNG state (ArcFace initialises its class centres randomly)."""
    if method in CLASSIFIER_METHODS:
        return CrossEntropy(opts.label_smoothing)
    if method not in METHODS:
        raise BadInput(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    _pml()
    from pytorch_metric_learning import losses

    if method == "arcface":
        margin = 28.6 if opts.margin is None else opts.margin
        scale = 32.0 if opts.scale is None else opts.scale
        return MetricLoss(method, losses.ArcFaceLoss(n_classes, dim, margin=margin, scale=scale))
    if method == "triplet":
        margin = 0.2 if opts.margin is None else opts.margin
        return MetricLoss(method, losses.TripletMarginLoss(margin=margin), make_miner(opts.miner, margin))
    temperature = 0.1 if opts.temperature is None else opts.temperature
    if method == "infonce":
        return MetricLoss(method, losses.NTXentLoss(temperature=temperature))
    return MetricLoss(method, losses.SupConLoss(temperature=temperature))
