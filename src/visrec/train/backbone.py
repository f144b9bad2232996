"""Fine-tune the last blocks of the image encoder itself (for GPU machines), with mixed precision.

The cached-embedding methods never touch the encoder; this path does: every parameter of the torch trunk is
frozen except those of its last ``blocks`` blocks, which train together with a head and any objective of
:mod:`visrec.train.losses`. On CUDA the forward pass runs under ``torch.autocast`` (bfloat16 where supported,
else float16 with a gradient scaler); on CPU it runs in float32. Frozen BatchNorm layers stay in eval mode so
their running statistics are not disturbed by small batches.

Typical use with the default encoder: ``trunk = encoder.build_torch()``, ``blocks = list(trunk.net._blocks)``,
``features = lambda m, x: m(x)[0][-1].mean(dim=(2, 3))`` (pooled head features).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from visrec.errors import BadInput
from visrec.train.heads import Head
from visrec.train.loop import balanced_batches, resolve_device, seeded
from visrec.train.losses import Objective

Features = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class UnfreezeConfig:
    """``blocks``: how many of the last blocks train; ``lr``: their learning rate (the head's is ``head_lr``);
    ``amp``: mixed precision on CUDA (ignored on CPU); ``device``: ``auto``, ``cpu`` or ``cuda``."""

    blocks: int = 2
    epochs: int = 3
    batch_size: int = 32
    per_class: int = 4
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    amp: bool = True
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.blocks < 1 or self.epochs < 1 or self.batch_size < 1:
            raise BadInput(f"blocks, epochs and batch_size must be >= 1, got {self.blocks}, {self.epochs}, "
                           f"{self.batch_size}")  # fmt: skip


def unfreeze_last(model: nn.Module, blocks: Sequence[nn.Module], n: int) -> list[nn.Parameter]:
    """Freeze every parameter of ``model`` except those of ``blocks[-n:]``; returns the trainable ones."""
    if not 1 <= n <= len(blocks):
        raise BadInput(f"can unfreeze 1 to {len(blocks)} blocks of this model, got {n}")
    for p in model.parameters():
        p.requires_grad_(False)
    trainable: list[nn.Parameter] = []
    for block in blocks[-n:]:
        for p in block.parameters():
            p.requires_grad_(True)
            trainable.append(p)
    return trainable


def _train_mode(model: nn.Module, blocks: Sequence[nn.Module], n: int) -> None:
    model.eval()
    for block in blocks[-n:]:
        block.train()


def autocast_for(device: torch.device, amp: bool) -> tuple[AbstractContextManager, torch.dtype | None]:
    """The autocast context and dtype for ``device`` (a no-op context and None on CPU or with ``amp`` off)."""
    if device.type != "cuda" or not amp:
        return nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype), dtype


def finetune_backbone(
    model: nn.Module, blocks: Sequence[nn.Module], features: Features, head: Head, objective: Objective,
    images: torch.Tensor, labels: np.ndarray, cfg: UnfreezeConfig,
) -> list[float]:  # fmt: skip
    """Train the last ``cfg.blocks`` of ``blocks`` (inside ``model``) plus ``head`` on ``images`` ``(n, 3, h, w)``
    float32 (already normalised as the model expects) with integer ``labels`` ``(n,)``. ``features(model, x)``
    returns ``(b, d)`` pooled features. Returns the mean loss of each epoch; the modules are trained in place."""
    if len(images) != len(labels):
        raise BadInput(f"{len(images)} images but {len(labels)} labels")
    device = resolve_device(cfg.device)
    trainable = unfreeze_last(model, blocks, cfg.blocks)
    model.to(device)
    head.to(device)
    groups = [{"params": trainable, "lr": cfg.lr},
              {"params": [*head.parameters(), *objective.parameters()], "lr": cfg.head_lr}]  # fmt: skip
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    cast, dtype = autocast_for(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    with seeded(cfg.seed):
        for _ in range(cfg.epochs):
            _train_mode(model, blocks, cfg.blocks)
            head.train()
            total = 0.0
            for rows in balanced_batches(labels, cfg.batch_size, cfg.per_class, rng):
                x = images[torch.from_numpy(rows)].to(device, non_blocking=True)
                y = torch.from_numpy(labels[rows]).to(device)
                with cast:
                    f = features(model, x)
                loss = objective(head(f.float()), y, head)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total += float(loss.detach()) * len(rows)
            losses.append(total / len(labels))
    model.eval()
    head.eval()
    return losses
