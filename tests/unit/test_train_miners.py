"""Triplet miners pick the hard examples they promise (on points placed by hand on a line)."""

from __future__ import annotations

import numpy as np
import torch

from visrec.train.losses import make_miner

# 2-D unit vectors at these angles (degrees); labels below. Distances grow with the angle between them.
ANGLES = np.array([0.0, 10.0, 40.0, 25.0, 90.0, 60.0])
LABELS = torch.tensor([0, 0, 0, 1, 1, 1])


def _points() -> torch.Tensor:
    rad = np.radians(ANGLES)
    return torch.tensor(np.stack([np.cos(rad), np.sin(rad)], axis=1), dtype=torch.float64)


def test_batch_hard_takes_the_farthest_positive_and_the_nearest_negative() -> None:
    a, p, n = make_miner("batch-hard")(_points(), LABELS)
    chosen = {int(i): (int(j), int(k)) for i, j, k in zip(a, p, n, strict=True)}
    assert chosen[0] == (2, 3)  # farthest same-label point (40 deg), nearest other-label one (25 deg)
    assert chosen[1] == (2, 3)  # 10 deg: positives at 0 and 40 -> 40 is farther; negative 25 is nearest
    assert chosen[4] == (3, 2)  # 90 deg: farthest positive 25, nearest negative 40


def test_semi_hard_keeps_only_negatives_beyond_the_positive_within_the_margin() -> None:
    x = _points()
    a, p, n = make_miner("semi-hard", margin=0.2)(x, LABELS)
    assert len(a) > 0
    d = torch.cdist(x, x)
    dap, dan = d[a, p], d[a, n]
    assert bool(((dan > dap) & (dan < dap + 0.2)).all())
    # (0, 1, 3): d(0,1) = 0.174, d(0,3) = 0.433 is farther than the margin allows -> not semi-hard
    triplets = set(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    assert (0, 1, 3) not in triplets


def test_all_means_no_miner() -> None:
    assert make_miner("all") is None
