"""Within-class whitening: equals the dense numpy reference, and fixes kNN where a nuisance direction dominates."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.classify.whitening import (
    WithinClassWhitening,
    apply_whitener,
    cholesky_whitener,
    fit_within_class_whitening,
)
from visrec.errors import BadInput, DimensionMismatch


def _reference(x: np.ndarray, labels: np.ndarray, shrink: float, queries: np.ndarray) -> np.ndarray:
    """Dense ``S^(-1/2)`` of ``S_w + shrink * trace(S_w) / d * I`` from a full eigen-decomposition."""
    classes = np.unique(labels)
    means = {c: x[labels == c].mean(axis=0) for c in classes}
    r = x - np.stack([means[c] for c in labels])
    sw = r.T @ r / len(x)
    s = sw + shrink * np.trace(sw) / len(sw) * np.eye(len(sw))
    w, v = np.linalg.eigh(s)
    y = (queries - x.mean(axis=0)) @ (v / np.sqrt(w)) @ v.T
    return y / np.linalg.norm(y, axis=1, keepdims=True)


@pytest.mark.parametrize(("n", "d"), [(60, 12), (20, 40)])  # full rank, and fewer items than dimensions
def test_matches_dense_reference(n: int, d: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, d)).astype(np.float32)
    labels = np.array([f"c{i % 4}" for i in range(n)])
    q = rng.normal(size=(7, d)).astype(np.float32)
    got = fit_within_class_whitening(x, labels, shrink=0.3).transform(q)
    assert got.shape == (7, d) and got.dtype == np.float32
    np.testing.assert_allclose(got, _reference(x.astype(np.float64), labels, 0.3, q), atol=2e-5)
    assert got.shape[1] == d


def test_whitening_rescues_knn_from_a_nuisance_direction() -> None:
    # Two classes 1.0 apart along axis 0; every image also varies a lot (std 2) along axes 1-3 (say, lighting).
    rng = np.random.default_rng(0)
    n, d = 200, 8
    labels = np.array(["a", "b"] * (n // 2))
    x = rng.normal(scale=0.1, size=(n, d))
    x[:, 0] += np.where(labels == "a", 0.0, 1.0)
    x[:, 1:4] += rng.normal(scale=2.0, size=(n, 3))
    gallery, queries = x[:100], x[100:]
    gl, ql = labels[:100], labels[100:]

    def nn_accuracy(g: np.ndarray, q: np.ndarray) -> float:
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        return float((gl[(q @ g.T).argmax(axis=1)] == ql).mean())

    wcw = fit_within_class_whitening(gallery, gl)
    raw = nn_accuracy(gallery - gallery.mean(axis=0), queries - gallery.mean(axis=0))
    whitened = nn_accuracy(wcw.transform(gallery), wcw.transform(queries))
    assert raw < 0.9 and whitened > 0.95, (raw, whitened)


def test_bad_inputs_are_named() -> None:
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(BadInput, match="two classes"):
        fit_within_class_whitening(x, ["a", "a", "a", "a"])
    with pytest.raises(BadInput, match="two classes"):
        fit_within_class_whitening(x, ["a", "b", "c", "d"])
    with pytest.raises(DimensionMismatch, match="labels"):
        fit_within_class_whitening(x, ["a", "b"])
    with pytest.raises(BadInput, match="shrink"):
        fit_within_class_whitening(x, ["a", "a", "b", "b"], shrink=0)
    wcw = fit_within_class_whitening(x, ["a", "a", "b", "b"])
    assert isinstance(wcw, WithinClassWhitening) and wcw.dim == 4
    with pytest.raises(DimensionMismatch, match=r"\(n, 4\)"):
        wcw.transform(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("n, d", [(60, 16), (12, 16)])  # more items than dimensions, and fewer
def test_cholesky_whitener_gives_the_stored_fits_cosines(n: int, d: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, d)) + 2.0 * rng.normal(size=(1, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels = np.array([f"c{i % 3}" for i in range(n)])
    queries = rng.normal(size=(7, d)).astype(np.float32)
    stored = fit_within_class_whitening(x, labels)
    quick = cholesky_whitener(x, labels)
    expected = stored.transform(queries) @ stored.transform(x).T
    got = apply_whitener(quick, queries) @ apply_whitener(quick, x).T
    np.testing.assert_allclose(got, expected, atol=2e-5)
    plain = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ x.T
    assert np.abs(plain - expected).max() > 0.05  # the comparison would notice a map that is not whitening
