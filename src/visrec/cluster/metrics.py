"""Cluster quality against reference labels: purity, NMI, ARI (noise label -1 counts as its own cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visrec.errors import BadInput


def _contingency(pred: Sequence[Any], truth: Sequence[Any]) -> np.ndarray:
    if len(pred) != len(truth) or len(pred) == 0:
        raise BadInput(f"need one predicted and one true label per item, got {len(pred)} and {len(truth)}")
    _, p = np.unique(np.asarray(pred, dtype=str), return_inverse=True)
    _, t = np.unique(np.asarray(truth, dtype=str), return_inverse=True)
    table = np.zeros((p.max() + 1, t.max() + 1), np.int64)
    np.add.at(table, (p, t), 1)
    return table


def purity(pred: Sequence[Any], truth: Sequence[Any]) -> float:
    """Share of items whose cluster's majority label is their own label (1.0 = every cluster is pure)."""
    table = _contingency(pred, truth)
    return float(table.max(axis=1).sum() / table.sum())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(pred: Sequence[Any], truth: Sequence[Any]) -> float:
    """Normalised mutual information, arithmetic mean normalisation (sklearn's default); 1.0 when both are trivial."""
    table = _contingency(pred, truth).astype(np.float64)
    n = table.sum()
    hp, ht = _entropy(table.sum(1)), _entropy(table.sum(0))
    if hp == 0.0 and ht == 0.0:
        return 1.0
    outer = np.outer(table.sum(1), table.sum(0)) / n
    nz = table > 0
    mi = float((table[nz] / n * np.log(table[nz] / outer[nz])).sum())
    return max(0.0, mi / ((hp + ht) / 2.0)) if (hp + ht) > 0 else 0.0


def ari(pred: Sequence[Any], truth: Sequence[Any]) -> float:
    """Adjusted Rand index (0 ~ chance, 1 = identical partitions)."""
    table = _contingency(pred, truth)

    def comb2(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2.0).sum())

    total = comb2(np.array([table.sum()]))
    index, rows, cols = comb2(table), comb2(table.sum(1)), comb2(table.sum(0))
    expected = rows * cols / total if total else 0.0
    maximum = (rows + cols) / 2.0
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def cluster_quality(pred: Sequence[Any], truth: Sequence[Any]) -> dict[str, float]:
    """``{"purity", "nmi", "ari", "clusters", "classes"}`` for one clustering."""
    table = _contingency(pred, truth)
    return {
        "purity": purity(pred, truth), "nmi": nmi(pred, truth), "ari": ari(pred, truth),
        "clusters": float(table.shape[0]), "classes": float(table.shape[1]),
    }  # fmt: skip
