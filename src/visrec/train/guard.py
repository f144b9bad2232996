"""Collapse guard: watch the embedding's spread, effective rank and positive/negative distance gap per epoch.

A projection trained on a few hundred images can "solve" its loss by mapping everything into a narrow cone
(spread -> 0), onto a few directions (effective rank -> 1), or by losing the ordering of same-label vs
other-label pairs (gap -> 0). Any of these ruins retrieval while the training loss may still look fine, so the
loop checks the validation embeddings after every epoch and stops with :class:`EmbeddingCollapsed`, naming the
figure that failed and what to change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from visrec.errors import VisrecError


class EmbeddingCollapsed(VisrecError):
    """Training drove the embedding into a degenerate state; nothing was saved."""

    exit_code = 1


@dataclass(frozen=True)
class Spread:
    """Health figures of a set of unit vectors.

    ``spread``: ``1 - |mean|^2`` (0 when every vector is the same, about 1 when they are spread out; for unit
    vectors the mean squared pairwise distance is twice this). ``effective_rank``: ``exp`` of the entropy of the
    normalised singular values of the centred vectors (Roy & Vetterli 2007), between 1 and ``d``. ``gap``:
    mean cosine distance of different-label pairs minus that of same-label pairs (> 0 when labels cluster).
    """

    spread: float
    effective_rank: float
    gap: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def effective_rank(x: np.ndarray) -> float:
    """Entropy effective rank of the rows of ``x`` ``(n, d)`` after centring; 0 for fewer than two rows."""
    if len(x) < 2:
        return 0.0
    c = np.asarray(x, np.float64) - x.mean(axis=0)
    gram = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c  # same non-zero spectrum, the smaller matrix
    s = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))
    total = s.sum()
    if total <= 1e-12:
        return 1.0
    p = s[s > total * 1e-6] / total  # drop the rounding noise of the eigensolver
    return float(np.exp(-(p * np.log(p)).sum()))


def measure(z: np.ndarray, labels: np.ndarray) -> Spread:
    """:class:`Spread` of unit rows ``z`` ``(n, d)`` with integer ``labels`` ``(n,)``."""
    z = np.asarray(z, np.float64)
    mean = z.mean(axis=0)
    dist = 1.0 - z @ z.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(z), dtype=bool)
    pos, neg = dist[same & off], dist[~same]
    gap = float(neg.mean() - pos.mean()) if len(pos) and len(neg) else 0.0
    return Spread(float(1.0 - mean @ mean), effective_rank(z), gap)


@dataclass(frozen=True)
class GuardConfig:
    """Limits below which the embedding counts as collapsed.

    ``min_spread_ratio``: the spread may not fall below this share of its starting value (ImageNet features are
    non-negative, so a healthy base embedding may already sit in a cone: spread 0.1). ``min_rank_ratio``: the
    effective rank may not fall below this share of ``min(classes - 1, starting rank)`` (a ``c``-class embedding
    needs about ``c - 1`` directions). ``min_gap_ratio``: the positive/negative gap may not fall below this share
    of its starting value.
    """

    min_spread_ratio: float = 0.2
    min_rank_ratio: float = 0.5
    min_gap_ratio: float = 0.1
    enabled: bool = True


class CollapseGuard:
    """Compare each epoch's :class:`Spread` with the starting one; :meth:`check` raises on collapse."""

    def __init__(self, start: Spread, n_classes: int, config: GuardConfig | None = None) -> None:
        self.start = start
        self.n_classes = n_classes
        self.config = config or GuardConfig()
        self.history: list[dict[str, Any]] = []

    def problems(self, now: Spread) -> list[str]:
        """Plain-language reasons ``now`` counts as collapsed (empty when healthy)."""
        cfg = self.config
        out = []
        spread_floor = cfg.min_spread_ratio * self.start.spread
        if now.spread < spread_floor:
            out.append(f"spread {now.spread:.4f} < {spread_floor:.4f} (the vectors point almost the same way)")
        rank_floor = max(1.0, cfg.min_rank_ratio * min(self.n_classes - 1, self.start.effective_rank))
        if now.effective_rank < rank_floor:
            out.append(f"effective rank {now.effective_rank:.2f} < {rank_floor:.2f} (too few directions left)")
        if self.start.gap > 0 and now.gap < cfg.min_gap_ratio * self.start.gap:
            out.append(
                f"same-label vs other-label distance gap {now.gap:.3f} fell below "
                f"{cfg.min_gap_ratio:.0%} of its start {self.start.gap:.3f}"
            )
        return out

    def check(self, epoch: int, now: Spread) -> None:
        """Record ``now``; raise :class:`EmbeddingCollapsed` when it shows a collapse and the guard is on."""
        self.history.append({"epoch": epoch, **now.to_dict()})
        found = self.problems(now)
        if found and self.config.enabled:
            raise EmbeddingCollapsed(
                f"the embedding collapsed at epoch {epoch}: " + "; ".join(found) + f" (start: spread "
                f"{self.start.spread:.3f}, effective rank {self.start.effective_rank:.2f}, gap {self.start.gap:.3f})"
                ". Nothing was saved. Lower --lr, raise --weight-decay, or use another --method (triplet: --miner "
                "semi-hard; a margin or temperature that is too tight can also cause this)"
            )
