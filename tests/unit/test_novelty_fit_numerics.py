"""The Gaussian novelty fit's fast numerics give the scores of the plain float64 ones (no timings here: see
``benchmarks/``): float32 scatter eigenvectors, Gram-matrix axes when items are fewer than dimensions, Cholesky
inverses, and held-out folds fitted side by side."""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf

from visrec.classify import novelty, openset_fit
from visrec.classify.novelty import GaussianNovelty, create_novelty, map_fits
from visrec.errors import BadInput


def _clusters(n: int, d: int, classes: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``n`` unit rows in ``d`` dims around ``classes`` centres, with a decaying spectrum like CNN features."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.sqrt(1.0 + np.arange(d))
    centres = rng.normal(size=(classes, d)) * scales * 3
    lab = rng.integers(0, classes, n)
    x = centres[lab] + rng.normal(size=(n, d)) * scales
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), [f"c{c}" for c in lab]


def _reference_scores(train: np.ndarray, labels: list[str], queries: np.ndarray, dims: int, relative: bool):
    """The plain fit: float64 eigh of the scatter matrix, ``pinv`` of the shrunk covariances."""
    x = train.astype(np.float64)
    mean = x.mean(axis=0)
    _, vecs = np.linalg.eigh((x - mean).T @ (x - mean))
    axes = vecs[:, ::-1][:, :dims].T
    z = (x - mean) @ axes.T
    labs = np.asarray(labels)
    classes = np.unique(labs)
    mus = np.stack([z[labs == c].mean(axis=0) for c in classes])
    inv = np.searchsorted(classes, labs)
    prec = np.linalg.pinv(ledoit_wolf(z - mus[inv], assume_centered=True)[0])
    q = (queries.astype(np.float64) - mean) @ axes.T
    diff = q[:, None, :] - mus[None]
    out = np.einsum("qcd,de,qce->qc", diff, prec, diff).min(axis=1)
    if relative:
        d0 = q - z.mean(axis=0)
        out = out - np.einsum("qd,de,qe->q", d0, np.linalg.pinv(ledoit_wolf(z)[0]), d0)
    return out


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("n", [500, 70], ids=["items>dims (scatter)", "items<dims/2 (gram)"])
def test_fast_fit_scores_like_the_plain_float64_fit(n: int, relative: bool) -> None:
    train, labels = _clusters(n, 160, 6)
    queries, _ = _clusters(40, 160, 6, seed=1)
    dims = 64 if n > 160 else 60
    got = GaussianNovelty(dims=dims, relative=relative).fit(train, labels).score(queries)
    ref = _reference_scores(train, labels, queries, dims, relative)
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4 * np.abs(ref).mean())


def test_principal_axes_span_the_float64_subspace() -> None:
    for n in (400, 90):  # scatter path, Gram path
        x, _ = _clusters(n, 200, 5)
        centred = x.astype(np.float64) - x.mean(axis=0)
        _, vecs = np.linalg.eigh(centred.T @ centred)
        ref = vecs[:, ::-1][:, :50]
        got = novelty._principal_axes(centred, 50)
        assert got.shape == (50, 200) and got.dtype == np.float64
        np.testing.assert_allclose(got @ got.T, np.eye(50), atol=1e-5)  # orthonormal rows
        cosines = np.linalg.svd(ref.T @ got.T, compute_uv=False)  # cosines of the principal angles
        assert cosines.min() > 0.9999, f"n={n}: subspace drifted, smallest cosine {cosines.min()}"


@pytest.mark.parametrize("dims", [1, 17, 119, 120])
def test_leading_eigenvectors_are_those_of_the_full_solve(dims: int) -> None:
    from scipy.linalg import eigh

    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(120, 120)))[0]
    spectrum = 1.0 / (1.0 + np.arange(120)) + 1e-3 * rng.random(120)  # decaying, distinct, some close together
    matrix = (basis * spectrum) @ basis.T
    vals, vecs = novelty._leading_eigenvectors(matrix, dims)
    ref_vals, ref_vecs = eigh(matrix)
    assert vals.shape == (dims,) and vecs.shape == (120, dims) and vecs.dtype == np.float64
    np.testing.assert_allclose(vals, ref_vals[::-1][:dims], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.abs((vecs * ref_vecs[:, ::-1][:, :dims]).sum(axis=0)), 1.0, atol=1e-9)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(dims), atol=1e-12)


def test_leading_eigenvectors_fall_back_to_the_full_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = np.diag([3.0, 1.0, 2.0, 0.5])
    fast = novelty._leading_eigenvectors(matrix, 2)
    monkeypatch.setattr(novelty, "_tridiagonal_leading", lambda m, d: None)  # LAPACK reported a failure
    full = novelty._leading_eigenvectors(matrix, 2)
    np.testing.assert_allclose(fast[0], [3.0, 2.0])
    np.testing.assert_allclose(full[0], fast[0])
    np.testing.assert_allclose(np.abs(full[1]), np.abs(fast[1]), atol=1e-12)


def test_gram_path_falls_back_when_an_axis_has_no_variance() -> None:
    x, _ = _clusters(30, 150, 3)
    rows = np.repeat(x, 2, axis=0)  # 60 items, rank <= 30: asking for 40 axes leaves some with no variance
    centred = rows.astype(np.float64) - rows.mean(axis=0)
    axes = novelty._principal_axes(centred, 40)
    np.testing.assert_allclose(axes @ axes.T, np.eye(40), atol=1e-4)


def test_spd_inverse_matches_pinv_and_survives_a_singular_matrix() -> None:
    a = np.cov(np.random.default_rng(0).normal(size=(300, 40)), rowvar=False) + 0.05 * np.eye(40)
    np.testing.assert_allclose(novelty._spd_inverse(a), np.linalg.pinv(a), rtol=1e-8, atol=1e-10)
    singular = np.diag([2.0, 1.0, 0.0])
    np.testing.assert_allclose(novelty._spd_inverse(singular), np.linalg.pinv(singular))


def test_map_fits_keeps_order_and_runs_side_by_side_only_when_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(novelty, "usable_cores", lambda: 2)
    threads: set[int] = set()
    barrier = threading.Barrier(2, timeout=5)

    def work(i: int) -> int:
        threads.add(threading.get_ident())
        if i < 2:
            barrier.wait()  # the first two run at once, or this times out
        return i * i

    assert map_fits(work, range(7), fitted_bytes=1 << 20) == [i * i for i in range(7)]
    assert threading.get_ident() not in threads
    threads.clear()
    assert map_fits(lambda i: i + 1, range(4), fitted_bytes=1 << 40) == [1, 2, 3, 4]


def test_held_out_novelty_is_the_same_fitted_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = _clusters(240, 64, 6)
    gid = np.arange(240) // 2
    rows = np.arange(0, 240, 3)
    make: Any = lambda: create_novelty("mahalanobis", dims=32)  # noqa: E731
    parallel = openset_fit.held_out_novelty(make, x, labels, gid, rows)
    monkeypatch.setattr(openset_fit, "map_fits", lambda fn, items, fitted_bytes: [fn(i) for i in items])
    serial = openset_fit.held_out_novelty(make, x, labels, gid, rows)
    assert parallel[2] == serial[2]
    for a, b in zip(parallel[:2], serial[:2], strict=True):
        assert np.isfinite(a).sum() > 0
        np.testing.assert_allclose(a, b, rtol=1e-5, equal_nan=True)


def test_fold_scatter_is_the_scatter_of_the_kept_rows() -> None:
    x, _ = _clusters(300, 40, 4)
    scatters = novelty.FoldScatter(x)
    rng = np.random.default_rng(3)
    for share in (0.9, 0.2):  # few rows left out (total minus them), few rows kept (summed directly)
        keep = rng.random(300) < share
        rows = x[keep].astype(np.float64)
        centred = rows - rows.mean(axis=0)
        np.testing.assert_allclose(scatters.of(keep), centred.T @ centred, atol=1e-10)
    with pytest.raises(BadInput, match="at least one kept row"):
        scatters.of(np.zeros(300, bool))


def test_held_out_novelty_with_fold_scatters_scores_like_fitting_each_fold_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # More items than dimensions: every fold takes its scatter from the full set's minus the rows it leaves out.
    x, labels = _clusters(400, 48, 6)
    gid = np.arange(400) // 2
    rows = np.arange(400)
    make: Any = lambda: create_novelty("mahalanobis", dims=24)  # noqa: E731
    fast = openset_fit.held_out_novelty(make, x, labels, gid, rows)
    used: list[int] = []
    real = novelty.FoldScatter.of
    monkeypatch.setattr(novelty.FoldScatter, "of", lambda self, keep: used.append(1) or real(self, keep))
    openset_fit.held_out_novelty(make, x, labels, gid, rows)
    assert len(used) == 15  # 5 leave-classes-out folds and 10 known folds all used it
    monkeypatch.setattr(openset_fit, "FoldScatter", lambda vectors: None)  # each fold sums its own rows
    plain = openset_fit.held_out_novelty(make, x, labels, gid, rows)
    assert fast[2] == plain[2] == 24
    for a, b in zip(fast[:2], plain[:2], strict=True):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=1e-4)


@pytest.mark.parametrize(("others", "threads"), [(0, 2), (1, 1), (5, 1)])
def test_the_final_fit_leaves_busy_cores_to_other_processes(
    monkeypatch: pytest.MonkeyPatch, others: int, threads: int
) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    from visrec import blas
    from visrec.index.derived import novelty_files

    monkeypatch.setattr(blas, "usable_cores", lambda: 2)
    monkeypatch.setattr(blas, "_others_running", lambda: others)
    x, labels = _clusters(120, 32, 4)
    seen: list[set[int]] = []
    fit = GaussianNovelty.fit

    def spying_fit(self: GaussianNovelty, *args: Any, **kwargs: Any) -> GaussianNovelty:
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(GaussianNovelty, "fit", spying_fit)
    cals = {"knn": {"decision": {"novelty": "mahalanobis", "novelty_dims": 16}}}
    with threadpool_limits(limits=2, user_api="blas"):  # a 2-thread BLAS whatever this machine has
        files = novelty_files(x, [(lab,) for lab in labels], cals)
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}  # restored after
    assert seen == [{threads}] and np.load(io.BytesIO(files["novelty.npz"]))["axes"].shape == (16, 32)


def test_free_cores_reads_the_running_tasks_of_other_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from visrec import blas

    if blas._others_running() is None:
        pytest.skip("no /proc here: every core counts as free")
    assert blas._others_running() >= 0  # type: ignore[operator]
    monkeypatch.setattr(blas, "usable_cores", lambda: 4)
    flicker = iter([0, 3, 0, 0, 3])  # a task passing by in two looks of five is not a busy core
    monkeypatch.setattr(blas, "_others_running", lambda: next(flicker))
    assert blas.free_cores(gap=0) == 4
    monkeypatch.setattr(blas, "_others_running", lambda: None)
    assert blas.free_cores(gap=0) == 4


def test_calibration_figures_are_those_of_full_eigen_solves_sklearn_shrinkage_and_plain_ridge_folds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scipy.linalg import eigh

    from visrec.classify import CalibrationOptions, KnnClassifier, LinearClassifier, calibrate_leave_one_group_out

    x, labels = _clusters(300, 400, 6)  # folds of ~240 items: scatter route, about 230 of 400 axes
    labs = [(lab,) for lab in labels]

    def figures() -> list[dict[str, Any]]:
        out = []
        for clf in (KnnClassifier(), LinearClassifier()):
            opts = CalibrationOptions(novelty="mahalanobis")
            out.append(calibrate_leave_one_group_out(x, labs, None, clf, opts).to_dict())
        return out

    fast = figures()
    assert 0 < fast[0]["decision"]["novelty_dims"] < 400

    def full_solve(matrix: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
        vals, vecs = eigh(matrix, driver="evd")
        return vals[::-1][:dims], vecs[:, ::-1][:, :dims]

    class OwnRows:  # each linear-probe fold sums its own scatter
        def __init__(self, vectors: np.ndarray) -> None:
            pass

        def of(self, keep: np.ndarray) -> None:
            return None

    monkeypatch.setattr(novelty, "_leading_eigenvectors", full_solve)
    monkeypatch.setattr(novelty, "_spd_inverse", lambda m: np.linalg.pinv(m))
    monkeypatch.setattr(novelty, "FoldScatter", OwnRows)
    sklearn_lw: Any = lambda rows, assume_centered=False: ledoit_wolf(rows, assume_centered=assume_centered)[0]  # noqa: E731
    monkeypatch.setattr(novelty, "ledoit_wolf_covariance", sklearn_lw)
    plain = figures()
    for a, b in zip(fast, plain, strict=True):
        assert a["target_met"] == b["target_met"] and a["params"] == b["params"]
        for key in ("global_threshold", "precision", "coverage", "unknown_rejected"):
            assert a[key] == pytest.approx(b[key], rel=1e-9), key


@pytest.mark.parametrize("centred", [True, False])
def test_ledoit_wolf_covariance_is_scikit_learns(centred: bool) -> None:
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(90, 30)) * (1.0 / (1.0 + np.arange(30))) + 0.3
    if centred:
        rows -= rows.mean(axis=0)
    ref = ledoit_wolf(rows, assume_centered=centred)[0]
    np.testing.assert_allclose(novelty.ledoit_wolf_covariance(rows, assume_centered=centred), ref, rtol=1e-10)
    one = rows[:, :1]
    np.testing.assert_allclose(novelty.ledoit_wolf_covariance(one), ledoit_wolf(one)[0], rtol=1e-10)
