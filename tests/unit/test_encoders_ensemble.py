"""Encoder ensembles (``a+b``): fusion math, weights, fingerprints, index round trip -- on the fake encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visrec.encoders import create_encoder, encoder_from_info
from visrec.encoders.ensemble import EnsembleEncoder, fuse, member_names
from visrec.errors import BadInput


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, size=(20 + i, 30, 3), dtype=np.uint8) for i in range(n)]


def test_fused_similarity_is_the_weighted_mean_of_member_similarities() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(5, 3))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    fused = fuse([a, b], (1.0, 3.0))
    assert fused.shape == (5, 11) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(fused @ fused.T, 0.25 * (a @ a.T) + 0.75 * (b @ b.T), atol=1e-6)


def test_ensemble_of_two_fake_encoders_matches_its_members() -> None:
    small, large = create_encoder("fake", dim=16), create_encoder("fake", dim=32)
    ens = EnsembleEncoder([small, large], weights=(2.0, 1.0))
    images = _images(4)
    emb = ens.encode_images(images, ids=list("abcd"))
    assert ens.dim == 48 and emb.vectors.shape == (4, 48) and emb.ids == tuple("abcd")
    va, vb = small.encode_images(images).vectors, large.encode_images(images).vectors
    expected = (2 * (va @ va.T) + vb @ vb.T) / 3
    np.testing.assert_allclose(emb.vectors @ emb.vectors.T, expected, atol=1e-5)
    assert emb.joint is not None and emb.joint.shape == (4, ens.joint_dim)


def test_ensemble_name_options_and_fingerprint() -> None:
    ens = create_encoder("fake+fake", members=[{"dim": 16}, {"dim": 32}])
    assert ens.name == "fake+fake"
    # The fingerprint covers the members and the weights.
    assert create_encoder("fake+fake", members=[{"dim": 16}, {"dim": 32}]).fingerprint == ens.fingerprint
    assert create_encoder("fake+fake", members=[{"dim": 16}, {"dim": 24}]).fingerprint != ens.fingerprint
    reweighted = create_encoder("fake+fake", members=[{"dim": 16}, {"dim": 32}], weights=[1, 2])
    assert reweighted.fingerprint != ens.fingerprint
    info = json.loads(json.dumps(reweighted.describe()))
    assert encoder_from_info(info).fingerprint == reweighted.fingerprint


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("fake+", {}, "two or more"),
        ("fake+nope", {}, "unknown encoder 'nope'"),
        ("fake+fake", {"weights": [1.0]}, "2 non-negative"),
        ("fake+fake", {"weights": [0, 0]}, "not all zero"),
        ("fake+fake", {"members": [{}]}, "expected 2"),
    ],
)
def test_bad_ensembles_say_what_is_wrong(name: str, options: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        create_encoder(name, **options)


def test_member_names() -> None:
    assert member_names("a + b+a") == ["a", "b", "a"]
    with pytest.raises(BadInput, match="two or more"):
        member_names("a")


def test_an_index_built_with_an_ensemble_reopens_with_it(tmp_path: Path) -> None:
    from tests.fixtures_images import make_labeled_tree
    from visrec import ops
    from visrec.index import Index

    make_labeled_tree(tmp_path / "data", ("red", "blue"), per_class=3, size=32)
    out = tmp_path / "ens.vrx"
    ops.index(tmp_path / "data", out, encoder="fake+fake")  # equal weights, default members
    idx = Index(out)
    assert idx.encoder.name == "fake+fake" and idx.store.count() == 6
    query = idx.encoder.encode_images(
        [tmp_path / "data" / "red" / sorted(p.name for p in (tmp_path / "data" / "red").iterdir())[0]]
    )
    hits = idx.search_vectors(query.vectors, k=3)[0]
    assert all("red" in h.labels for h in hits)
