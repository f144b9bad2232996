"""Naming clusters from a labeled index: neighbour majority with a distance, zero-shot fallback, CLI --name-from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from visrec.cli.faces import register
from visrec.cluster import Clustering
from visrec.cluster.naming import NamingConfig, name_by_neighbors, name_by_text, name_clusters
from visrec.errors import DimensionMismatch


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight groups around orthogonal directions (8-d): rows 0-9, 10-19, 20-29."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:3]
    x = np.repeat(centres, 10, axis=0) + rng.normal(0, 0.05, (30, 8))
    return x.astype(np.float32), np.repeat(np.arange(3), 10)


def test_neighbours_name_known_groups_and_leave_a_stranger_unnamed() -> None:
    x, groups = _blobs()
    index, index_labels = x[:20:2], ["ann"] * 5 + ["bob"] * 5  # an index of the first two people only
    query, _ = _blobs(seed=1)
    members = {f"c{g}": list(np.nonzero(groups == g)[0]) for g in range(3)}
    names = name_by_neighbors(members, query, index, index_labels, NamingConfig(k=3, max_distance=0.2))
    assert names["c0"].name == "ann" and names["c1"].name == "bob" and names["c0"].score == 1.0
    assert names["c2"].name is None and names["c2"].source == "none"  # far from every indexed face
    loose = name_by_neighbors(members, query, index, index_labels, NamingConfig(k=3))
    assert loose["c2"].name in ("ann", "bob")  # without a distance the majority always wins
    with pytest.raises(DimensionMismatch, match="index's encoder"):
        name_by_neighbors(members, query[:, :4], index, index_labels)


def test_a_mixed_cluster_needs_a_majority() -> None:
    x, _ = _blobs()
    index, labels = np.r_[x[:5], x[10:15]], ["ann"] * 5 + ["bob"] * 5
    mixed = {"c0": [0, 1, 10, 11]}  # half ann, half bob
    named = name_by_neighbors(mixed, x, index, labels, NamingConfig(k=1, min_share=0.6))
    assert named["c0"].name is None and named["c0"].score == 0.5


def test_zero_shot_names_by_the_closest_prompt_with_a_margin() -> None:
    x, _ = _blobs()
    members = {"c0": list(range(10)), "c1": list(range(20, 30))}
    texts = np.eye(8)[[0, 1]].astype(np.float32)  # "ann" prompt ~ group 0, "bob" ~ group 1; none for group 2
    out = name_by_text(members, x, texts, ["ann", "bob"], NamingConfig(min_text_similarity=0.5))
    assert out["c0"].name == "ann" and out["c0"].source == "zero-shot"
    assert out["c1"].name is None


def test_name_clusters_renames_automatic_clusters_only_and_keeps_duplicates_apart() -> None:
    x, groups = _blobs()
    ids = [f"img{i}.jpg" for i in range(30)]
    result = Clustering.from_labels(ids, np.r_[groups[:20], np.full(10, 3)])
    result.apply("rename", cluster="c1", name="Bobby")  # a person's own name stays
    index_labels = ["ann" if g in (0, 2) else "bob" for g in groups]  # two clusters both look like "ann"
    names = name_clusters(result, ids, x, x, index_labels, config=NamingConfig(k=3))
    clusters = result.clusters()
    assert set(clusters) == {"ann", "ann (2)", "Bobby"} and len(clusters["ann"]) == 10
    assert {n.cluster for n in names} == {"c0", "c3"}
    assert [n["renamed_to"] for n in result.info["naming"]] == ["ann", "ann (2)"]


def _tree(root: Path, colours: dict[str, tuple[int, int, int]], n: int = 3) -> Path:
    for name, rgb in colours.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            arr = np.clip(np.array(rgb) + 6 * j, 0, 255).astype(np.uint8)
            Image.fromarray(np.tile(arr, (24, 24, 1))).save(root / name / f"{j}.png")
    return root


def test_cli_cluster_name_from_an_image_index(tmp_path: Path) -> None:
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index.writer import build_index

    labeled = _tree(tmp_path / "labeled", {"red": (220, 20, 20), "blue": (20, 20, 220)})
    build_index(load_dataset(labeled), tmp_path / "idx", create_encoder("fake"))
    new = _tree(tmp_path / "new", {"a": (215, 25, 25), "b": (25, 25, 215), "c": (20, 180, 20)})
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    out = tmp_path / "clusters.json"
    args = ["cluster", str(new), "--out", str(out), "--k", "3", "--name-from", str(tmp_path / "idx")]
    res = CliRunner().invoke(app, [*args, "--name-max-distance", "0.05"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert set(summary["clusters"]) == {"red", "blue", "c2"}  # the green photos match no indexed label
    saved = Clustering.load(out)
    assert {saved.assignment[f"a/{j}.png"] for j in range(3)} == {"red"}
    assert saved.info["named_from"]["kind"] == "images" and saved.info["named_from"]["zero_shot_labels"] == 2
    res = CliRunner().invoke(app, [*args, "--encoder", "fake", "--name-max-distance", "0.05"])
    assert res.exit_code == 0, res.output


def test_zero_shot_naming_needs_a_real_text_side() -> None:
    """The ImageNet label bridge cannot tell names of people or characters apart: no zero-shot names through it."""
    from types import SimpleNamespace

    from visrec.cluster.sources import zero_shot_labels

    joint = np.zeros((2, 4), np.float32)
    clip_like = SimpleNamespace(joint=joint, encoder=SimpleNamespace())
    bridged = SimpleNamespace(joint=joint, encoder=SimpleNamespace(bridge=object()))
    image_only = SimpleNamespace(joint=None, encoder=SimpleNamespace())
    assert zero_shot_labels(clip_like, ["b", "a", "b"]) == ["a", "b"]
    assert zero_shot_labels(bridged, ["a"]) == [] and zero_shot_labels(image_only, ["a"]) == []
