"""The Ray engine embeds a folder exactly as the single-process encoder does, on a loopback-only local Ray.

One local Ray (2 CPUs) serves the whole module, including `visrec index --engine ray` run as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_images import make_bad_images, make_labeled_tree
from tests.listening import listening_addresses
from visrec.data import load_dataset
from visrec.distributed import RayConfig, embed_to_parquet, embed_with_ray, ray_session, read_embeddings_parquet
from visrec.distributed.ray_engine import is_loopback
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
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert {n["NodeManagerAddress"] for n in ray_local.nodes()} == {"127.0.0.1"}
    assert ray_local.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    listening = listening_addresses()
    assert len(listening) >= 3  # GCS, raylet, object manager at least
    exposed = [a for a in listening if not a.is_loopback]
    assert not exposed, f"Ray listens beyond loopback on {exposed}"


def test_fake_encoder_matches_single_process_and_reports_bad_files(ray_local: Any, folder: LabeledSet) -> None:
    res = embed_with_ray(folder, "fake", {}, config=RayConfig(batch_size=4, read_batch=8))
    good = [r.id for r in folder.records if _is_good(r.path)]
    assert list(res.embeddings.ids) == good  # dataset order, bad files left out
    assert {i for i, _ in res.skipped} == {r.id for r in folder.records} - set(good)
    assert any(reason.startswith("empty") for _, reason in res.skipped)
    np.testing.assert_allclose(res.embeddings.vectors, _reference(folder, "fake", res.embeddings.ids), atol=1e-6)


def test_parquet_round_trip(ray_local: Any, folder: LabeledSet, tmp_path: Path) -> None:
    out = embed_to_parquet(folder, "fake", tmp_path / "vectors", config=RayConfig(read_batch=8))
    back = read_embeddings_parquet(out, "fake-id")
    good = {r.id for r in folder.records if _is_good(r.path)}
    assert set(back.embeddings.ids) == good and {i for i, _ in back.skipped} == {r.id for r in folder.records} - good
    want = _reference(folder, "fake", back.embeddings.ids)
    np.testing.assert_allclose(back.embeddings.vectors, want, atol=1e-6)


def test_config_is_checked_before_ray_starts() -> None:
    with pytest.raises(BadInput, match="batch_size"):
        RayConfig(batch_size=0)
    with pytest.raises(BadInput, match="num_actors"):
        RayConfig(num_actors=0)


def test_cli_index_with_ray_equals_the_single_process_index(ray_local: Any, folder: LabeledSet, tmp_path: Path) -> None:
    """`visrec index --engine ray`, run as a user runs it (a second driver joining this loopback Ray), stores
    the vectors and metadata the single-process path stores, and reports the same unreadable files."""
    from visrec.encoders import create_encoder
    from visrec.index import Index
    from visrec.index.writer import build_index

    try:
        encoder = create_encoder("efficientnet-lite0")
    except MissingWeights as e:
        pytest.skip(str(e))
    address = ray_local.get_runtime_context().gcs_address
    cmd = ["index", str(folder.root), "--out", str(tmp_path / "ray.vrx"), "--engine", "ray", "--ray-address", address]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([sys.executable, "-m", "visrec.cli", *cmd, "--json"], capture_output=True, text=True,
                         timeout=300, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    local = build_index(folder, tmp_path / "local.vrx", encoder)
    assert report["count"] == local.count == 20 and report["added"] == 20
    assert {k: sorted(v) for k, v in report["skipped"].items()} == {k: sorted(v) for k, v in local.skipped.items()}
    ray_store, local_store = Index(tmp_path / "ray.vrx").store, Index(tmp_path / "local.vrx").store
    ids = local_store.ids()
    assert sorted(ray_store.ids()) == sorted(ids)
    (got, got_meta), (want, want_meta) = ray_store.get(ids), local_store.get(ids)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got_meta == want_meta  # paths, labels, sizes and the perceptual hashes used for grouping


@pytest.mark.parametrize(
    ("address", "loopback"),
    [(None, True), ("127.0.0.1:6379", True), ("ray://localhost:10001", True), ("ray://head:10001", False),
     ("auto", False), ("10.0.0.5:6379", False)],
)  # fmt: skip
def test_loopback_addresses_are_recognised(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback
