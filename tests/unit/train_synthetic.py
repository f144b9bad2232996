"""Synthetic cached embeddings for the fine-tuning tests: labels that a frozen kNN half-confuses.

Each vector is a small class signal plus a large "style" offset shared across classes (as lighting or drawing
style is), plus noise. Nearest neighbours mostly share the style, so kNN on the raw vectors is poor; a projection
that learns to ignore the style dimensions fixes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visrec.train.data import EmbeddingSplit, split_embeddings

ENCODER = {"name": "fake", "fingerprint": "fake-0000000000000000", "describe": {"name": "fake", "dim": 16}}


def synthetic_items(
    n_per_class: int = 16, n_classes: int = 4, dim: int = 16, seed: int = 0
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """ids, ``(n, dim)`` float32 unit vectors and index-style metadata (label, ``grouped_split`` column)."""
    rng = np.random.default_rng(seed)
    ids, rows, metas = [], [], []
    for c in range(n_classes):
        for i in range(n_per_class):
            v = np.zeros(dim)
            v[c] = 1.0
            v[n_classes + i % 3] += 2.5  # style, shared across classes
            v += rng.normal(0, 0.12, dim)
            ids.append(f"c{c}-{i}")
            rows.append(v / np.linalg.norm(v))
            side = "test" if i % 4 == 3 else "train"
            metas.append({"path": f"c{c}/{i}.png", "labels": [f"class{c}"], "extra": {"grouped_split": side}})
    return ids, np.asarray(rows, np.float32), metas


def synthetic_split(seed: int = 0, **kwargs: Any) -> EmbeddingSplit:
    ids, vecs, metas = synthetic_items(seed=seed, **kwargs)
    return split_embeddings(ids, vecs, metas, ENCODER, seed=seed)
