"""The collapse guard: its figures on known geometries, and a deliberately collapsing run that it stops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.unit.train_synthetic import synthetic_split
from visrec.train import EmbeddingCollapsed, GuardConfig, HeadSpec, LoopConfig, build_head, fit, measure
from visrec.train.guard import CollapseGuard, effective_rank
from visrec.train.heads import Head


class PullTogether:
    """A broken objective: maximise every pairwise cosine, whatever the labels (collapses by design)."""

    name = "pull-together"

    def __call__(self, z: torch.Tensor, labels: torch.Tensor, head: Head) -> torch.Tensor:
        return -(z @ z.T).mean()

    def parameters(self) -> list[nn.Parameter]:
        return []


def test_effective_rank_counts_the_directions_used() -> None:
    rng = np.random.default_rng(0)
    flat = np.zeros((50, 8))
    flat[:, 0] = rng.normal(size=50)
    assert effective_rank(flat) == pytest.approx(1.0, abs=1e-6)
    iso = rng.normal(size=(2000, 8))
    assert 7.0 < effective_rank(iso) <= 8.0


def test_measure_separates_a_healthy_from_a_collapsed_embedding() -> None:
    y = np.repeat(np.arange(4), 5)
    healthy = np.eye(4)[y] + np.random.default_rng(1).normal(0, 0.05, (20, 4))
    healthy /= np.linalg.norm(healthy, axis=1, keepdims=True)
    good = measure(healthy, y)
    same = np.tile([[1.0, 0.0, 0.0, 0.0]], (20, 1))
    bad = measure(same, y)
    assert good.spread > 0.7 and good.gap > 0.8 and good.effective_rank > 2.5
    assert bad.spread == pytest.approx(0.0, abs=1e-9) and bad.gap == pytest.approx(0.0, abs=1e-9)
    guard = CollapseGuard(good, n_classes=4)
    assert guard.problems(good) == []
    reasons = guard.problems(bad)
    assert any("spread" in r for r in reasons) and any("gap" in r for r in reasons)


def test_a_collapsing_run_is_stopped_with_the_reason() -> None:
    data = synthetic_split()
    head = build_head(HeadSpec(data.dim, 16), seed=0)
    cfg = LoopConfig(epochs=30, batch_size=32, lr=0.05, seed=0)
    with pytest.raises(EmbeddingCollapsed, match=r"collapsed at epoch \d+: .*spread") as err:
        fit(head, PullTogether(), data, cfg)
    assert "Nothing was saved" in str(err.value) and "--lr" in str(err.value)


def test_with_the_guard_off_the_same_run_finishes_and_the_history_shows_the_collapse() -> None:
    data = synthetic_split()
    head = build_head(HeadSpec(data.dim, 16), seed=0)
    cfg = LoopConfig(epochs=8, batch_size=32, lr=0.05, patience=100, guard=GuardConfig(enabled=False))
    res = fit(head, PullTogether(), data, cfg)
    assert res.epochs == 8
    assert res.history[-1]["spread"] < 0.2 * res.history[0]["spread"] or res.history[-1]["spread"] < 0.01
