"""Mirror-image averaging and the recommended ensemble are part of the encoder's identity; the raw-recognition
benchmark's vectorised kNN vote is the library's vote."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visrec.classify.knn import KnnClassifier
from visrec.encoders import create_encoder, encoder_from_info
from visrec.errors import ManifestMismatch, MissingWeights

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
raw_protocol = pytest.importorskip("raw_protocol")


def _create(name: str, **options: Any) -> Any:
    try:
        return create_encoder(name, bridge=False, precision="f32", **options)
    except MissingWeights as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_flip_changes_the_fingerprint_and_a_mismatched_index_is_refused() -> None:
    plain, flipped = _create("efficientnet-lite0"), _create("efficientnet-lite0", flip=True)
    assert flipped.fingerprint != plain.fingerprint and flipped.dim == plain.dim
    info = flipped.describe()
    assert info["options"]["flip"] is True
    assert encoder_from_info(info).fingerprint == flipped.fingerprint
    info["options"]["flip"] = False  # a manifest whose options no longer give the recorded encoder
    with pytest.raises(ManifestMismatch, match="rebuild the index"):
        encoder_from_info(info)


@pytest.mark.slow
def test_recommended_ensemble_is_three_lite_backbones_with_mirror_averaging() -> None:
    ens = _create("efficientnet-ensemble")
    assert ens.name == "efficientnet-ensemble" and ens.fingerprint.startswith("efficientnet-ensemble-")
    assert [m.name for m in ens.members] == ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
    assert [m.options.flip for m in ens.members] == [True, True, True]
    assert ens.weights == (2.0, 1.0, 1.0) and ens.dim == 1472 + 1472 + 1488
    plain = _create("efficientnet-lite0+efficientnet-lite1+efficientnet-lite2", weights=[2, 1, 1])
    assert plain.fingerprint != ens.fingerprint
    # the manifest records the name, weights and member options: reopening rebuilds the same encoder
    assert encoder_from_info(ens.describe()).fingerprint == ens.fingerprint
    unflipped = _create("efficientnet-ensemble", members=[{}, {}, {}])
    assert unflipped.fingerprint not in (ens.fingerprint, plain.fingerprint)
    assert encoder_from_info(plain.describe()).fingerprint == plain.fingerprint


@pytest.mark.parametrize(("k", "t"), [(10, 0.05), (3, 0.2), (1, 0.05)])
def test_benchmark_vote_is_the_library_vote(k: int, t: float) -> None:
    rng = np.random.default_rng(k)
    sims = rng.uniform(-0.2, 1.0, size=(40, 30))
    labels = np.array([f"c{i % 4}" for i in range(30)])
    got = raw_protocol.knn_predict(sims, labels, k=k, t=t)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    preds = KnnClassifier(k=k, temperature=t).predict_from_neighbors(
        [[(labels[j],) for j in row] for row in order], np.take_along_axis(sims, order, axis=1)
    )
    assert list(got) == [p.top_k[0][0] for p in preds]
