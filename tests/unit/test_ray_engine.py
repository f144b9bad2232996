"""The Ray engine embeds a folder exactly as the single-process encoder does, on a loopback-only local Ray."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_images import make_bad_images, make_labeled_tree
from visrec.data import load_dataset
from visrec.distributed import RayConfig, embed_to_parquet, embed_with_ray, ray_session, read_embeddings_parquet
from visrec.errors import BadInput, MissingWeights
from visrec.types import LabeledSet

pytest.importorskip("ray.data", reason="pip install 'visrec[ray]' to test the ray engine")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """One local Ray (2 CPUs) for the whole module; Ray start-up costs seconds."""
    with ray_session(None, num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> LabeledSet:
    root = tmp_path_factory.mktemp("ray") / "data"
    make_labeled_tree(root, ("amber", "blue"), per_class=10, size=48)
    make_bad_images(root / "amber")
    return load_dataset(root)


def _is_good(path: str) -> bool:
    return Path(path).name.startswith(("amber_", "blue_"))


def _reference(folder: LabeledSet, name: str, ids: tuple[str, ...]) -> np.ndarray:
    from visrec.encoders import create_encoder

    by_id = {r.id: r for r in folder.records}
    return create_encoder(name).encode_images([folder.abspath(by_id[i]) for i in ids]).vectors


def test_local_ray_listens_on_loopback_only(ray_local: Any) -> None:
    assert {n["NodeManagerAddress"] for n in ray_local.nodes()} == {"127.0.0.1"}
    assert ray_local.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def test_fake_encoder_matches_single_process_and_reports_bad_files(ray_local: Any, folder: LabeledSet) -> None:
    res = embed_with_ray(folder, "fake", {}, config=RayConfig(batch_size=4, read_batch=8))
    good = [r.id for r in folder.records if _is_good(r.path)]
    assert list(res.embeddings.ids) == good  # dataset order, bad files left out
    assert {i for i, _ in res.skipped} == {r.id for r in folder.records} - set(good)
    assert any(reason.startswith("empty") for _, reason in res.skipped)
    np.testing.assert_allclose(res.embeddings.vectors, _reference(folder, "fake", res.embeddings.ids), atol=1e-6)


def test_default_encoder_matches_single_process(ray_local: Any, folder: LabeledSet) -> None:
    good = folder.subset([r for r in folder.records if _is_good(r.path)])
    try:
        res = embed_with_ray(good, "efficientnet-lite0", {})
    except MissingWeights as e:
        pytest.skip(str(e))
    assert len(res.embeddings) == 20 and not res.skipped
    np.testing.assert_allclose(
        res.embeddings.vectors, _reference(good, "efficientnet-lite0", res.embeddings.ids), atol=1e-5
    )


def test_parquet_round_trip(ray_local: Any, folder: LabeledSet, tmp_path: Path) -> None:
    out = embed_to_parquet(folder, "fake", tmp_path / "vectors", config=RayConfig(read_batch=8))
    back = read_embeddings_parquet(out, "fake-id")
    direct = embed_with_ray(folder, "fake", {})
    order = {i: j for j, i in enumerate(back.embeddings.ids)}
    assert sorted(order) == sorted(direct.embeddings.ids) and len(back.skipped) == len(direct.skipped)
    rows = [order[i] for i in direct.embeddings.ids]
    np.testing.assert_allclose(back.embeddings.vectors[rows], direct.embeddings.vectors, atol=1e-6)


def test_config_is_checked_before_ray_starts() -> None:
    with pytest.raises(BadInput, match="batch_size"):
        RayConfig(batch_size=0)
    with pytest.raises(BadInput, match="num_actors"):
        RayConfig(num_actors=0)
