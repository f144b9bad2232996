"""Unfreezing the last blocks of an image encoder, on a tiny randomly initialised CNN (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from visrec.errors import BadInput
from visrec.train import HeadSpec, LossOptions, build_head, make_objective
from visrec.train.backbone import UnfreezeConfig, autocast_for, finetune_backbone, unfreeze_last


def _tiny() -> tuple[nn.Sequential, list[nn.Module]]:
    torch.manual_seed(0)
    blocks = [
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
    ]
    return nn.Sequential(*blocks), blocks


def _data() -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    images = rng.normal(0, 0.3, (24, 3, 12, 12)).astype(np.float32)
    for i, y in enumerate(labels):
        images[i, y] += 1.0  # each class brightens one colour channel
    return torch.from_numpy(images), labels


def test_only_the_last_blocks_train_and_the_loss_falls() -> None:
    model, blocks = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = build_head(HeadSpec(16, 8, classes=3), seed=0)
    objective = make_objective("linear", LossOptions(), 3, 8)
    images, labels = _data()
    cfg = UnfreezeConfig(blocks=1, epochs=6, batch_size=12, lr=1e-2, head_lr=5e-2, device="cpu")
    losses = finetune_backbone(model, blocks, lambda m, x: m(x).mean(dim=(2, 3)), head, objective, images,
                               labels, cfg)  # fmt: skip
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("2.") for k in changed), changed  # block 2 only (frozen BN untouched)
    assert losses[-1] < losses[0]


def test_unfreeze_bounds_and_cpu_autocast() -> None:
    model, blocks = _tiny()
    assert len(unfreeze_last(model, blocks, 2)) == 8  # conv w, b and BN w, b of the last two blocks
    assert sum(p.requires_grad for p in model.parameters()) == 8
    with pytest.raises(BadInput, match="1 to 3 blocks"):
        unfreeze_last(model, blocks, 4)
    ctx, dtype = autocast_for(torch.device("cpu"), amp=True)
    assert dtype is None
    with ctx:
        assert model(torch.zeros(1, 3, 4, 4)).dtype == torch.float32
