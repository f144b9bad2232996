"""Cluster quality metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from visrec.cluster import ari, cluster_quality, nmi, purity

PRED = [0, 0, 0, 1, 1, 1]
TRUE = ["a", "a", "b", "b", "b", "b"]


def test_purity_by_hand() -> None:
    # cluster 0: a,a,b -> 2 ; cluster 1: b,b,b -> 3 ; (2 + 3) / 6
    assert purity(PRED, TRUE) == pytest.approx(5 / 6)


def test_ari_by_hand() -> None:
    # contingency [[2,1],[0,3]]: sum C(n_ij,2)=1+0+0+3=4; rows 3,3 -> 6; cols 2,4 -> 1+6=7; C(6,2)=15
    expected_index = 6 * 7 / 15
    want = (4 - expected_index) / ((6 + 7) / 2 - expected_index)
    assert ari(PRED, TRUE) == pytest.approx(want)


def test_nmi_by_hand() -> None:
    n = 6
    joint = {(0, "a"): 2, (0, "b"): 1, (1, "b"): 3}
    rows, cols = {0: 3, 1: 3}, {"a": 2, "b": 4}
    mi = sum(c / n * math.log(c * n / (rows[i] * cols[j])) for (i, j), c in joint.items())
    h = lambda counts: -sum(c / n * math.log(c / n) for c in counts)  # noqa: E731
    assert nmi(PRED, TRUE) == pytest.approx(mi / ((h(rows.values()) + h(cols.values())) / 2))


def test_identical_partitions_score_one_whatever_the_names() -> None:
    q = cluster_quality([5, 5, 7, 9], ["x", "x", "y", "z"])
    assert q["purity"] == q["nmi"] == q["ari"] == pytest.approx(1.0)
    assert q["clusters"] == 3 and q["classes"] == 3


def test_everything_in_one_cluster() -> None:
    assert purity([0] * 4, ["a", "a", "b", "c"]) == 0.5
    assert nmi([0] * 4, ["a", "a", "b", "c"]) == 0.0
    assert ari([0] * 4, ["a", "a", "b", "c"]) == pytest.approx(0.0)
