"""Small trainable modules on top of frozen embeddings: a projection (the new embedding) and a classifier.

A :class:`Head` maps ``(n, in_dim)`` base vectors to ``(n, out_dim)`` L2-normalised vectors (``embed``); for
the cross-entropy methods it also scores the classes (``logits``). Its whole state is a flat dict of named
float32 tensors plus the small :class:`HeadSpec`, which is what an adapter saves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from visrec.errors import BadInput

KINDS = ("linear", "mlp")


@dataclass(frozen=True)
class HeadSpec:
    """Shape of a head. ``kind``: ``linear`` (one matrix) or ``mlp`` (Linear, GELU, Linear with a linear
    skip path, so training starts close to a random rotation of the base space); ``classes`` > 0 adds a
    cosine classifier over the projected vectors."""

    in_dim: int
    out_dim: int = 256
    kind: str = "linear"
    hidden: int = 512
    classes: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"head kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("in_dim", "out_dim", "hidden"):
            if int(getattr(self, name)) < 1:
                raise BadInput(f"head {name} must be >= 1, got {getattr(self, name)}")
        if self.classes < 0:
            raise BadInput(f"head classes must be >= 0, got {self.classes}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Head(nn.Module):
    """Projection (+ optional cosine classifier); see :class:`HeadSpec`."""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        self.spec = spec
        self.proj = nn.Linear(spec.in_dim, spec.out_dim, bias=False)
        # An orthogonal start keeps the base geometry (cosines are nearly preserved), so the first epoch
        # begins from the frozen encoder's quality instead of from noise.
        nn.init.orthogonal_(self.proj.weight)
        self.mlp: nn.Sequential | None = None
        if spec.kind == "mlp":
            last = nn.Linear(spec.hidden, spec.out_dim)
            # The non-linear branch starts at zero: the head begins as the orthogonal map and learns a residual.
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.mlp = nn.Sequential(nn.Linear(spec.in_dim, spec.hidden), nn.GELU(), last)
        self.classifier: nn.Linear | None = None
        if spec.classes:
            self.classifier = nn.Linear(spec.out_dim, spec.classes, bias=False)
            self.scale = 16.0

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised projection ``(n, out_dim)``."""
        z = self.proj(x)
        return z if self.mlp is None else z + self.mlp(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised projection ``(n, out_dim)``."""
        return nn.functional.normalize(self.raw(x), dim=1)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled cosine between normalised projections ``z`` and the class weights: ``(n, classes)``."""
        if self.classifier is None:
            raise BadInput("this head has no classifier (classes=0)")
        w = nn.functional.normalize(self.classifier.weight, dim=1)
        return self.scale * z @ w.T


def build_head(spec: HeadSpec, seed: int) -> Head:
    """A freshly initialised head; the same ``seed`` gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Head(spec)


def head_from_state(spec: HeadSpec, state: dict[str, torch.Tensor]) -> Head:
    """A head with the given weights (as saved by ``state_dict``); ``BadInput`` when they do not fit ``spec``."""
    head = Head(spec)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        raise BadInput(f"adapter weights do not fit its config: expected tensors {expected}, found {got}")
    head.load_state_dict(state)
    return head.eval()
