"""Manual cluster fixes persist: merge, split, move, rename, must/cannot-link, JSON round trip, replay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visrec.cluster import Clustering
from visrec.errors import BadInput


def _base() -> Clustering:
    return Clustering.from_labels(["a", "b", "c", "d", "e"], np.array([0, 0, 1, 1, -1]), {"method": "x"})


def test_from_labels_names_clusters_and_noise() -> None:
    assert _base().clusters() == {"c0": ["a", "b"], "c1": ["c", "d"], "noise": ["e"]}


def test_merge_split_move_rename() -> None:
    c = _base()
    c.apply("merge", a="c0", b="c1")
    assert c.clusters()["c0"] == ["a", "b", "c", "d"]
    c.apply("split", cluster="c0", items=["c", "d"])
    assert c.assignment["c"] == c.assignment["d"] != c.assignment["a"]
    c.apply("move", item="e", to="c0")
    c.apply("rename", cluster="c0", name="Alice")
    assert c.clusters()["Alice"] == ["a", "b", "e"]
    assert [e["op"] for e in c.edits] == ["merge", "split", "move", "rename"]


def test_must_and_cannot_link() -> None:
    c = _base()
    c.apply("must_link", a="a", b="c")
    assert c.assignment["c"] == c.assignment["a"]
    c.apply("cannot_link", a="a", b="b")
    assert c.assignment["b"] != c.assignment["a"]


def test_json_round_trip_and_replay_on_a_fresh_clustering(tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = _base()
    c.apply("merge", a="c0", b="c1")
    c.apply("rename", cluster="c0", name="Bob")
    path = tmp_path / "clusters.json"
    c.save(path)
    back = Clustering.load(path)
    assert back.assignment == c.assignment and back.edits == c.edits and back.info == c.info
    assert json.loads(path.read_text())["clusters"]["Bob"] == ["a", "b", "c", "d"]
    fresh = _base()
    skipped = fresh.reapply([*back.edits, {"op": "move", "item": "gone", "to": "Bob"}])
    assert fresh.assignment == c.assignment
    assert skipped == [{"op": "move", "item": "gone", "to": "Bob"}]


def test_bad_edits_name_what_exists() -> None:
    c = _base()
    with pytest.raises(BadInput, match="known: c0, c1, noise"):
        c.apply("merge", a="c0", b="zz")
    with pytest.raises(BadInput, match="use one of"):
        c.apply("explode", cluster="c0")
    with pytest.raises(BadInput, match="not in 'c1'"):
        c.apply("split", cluster="c1", items=["a"])


def test_clusters_of_equal_size_are_listed_in_number_order() -> None:
    ids = [f"i{n}" for n in range(12)]
    c = Clustering.from_labels(ids, np.arange(12))
    assert list(c.clusters()) == [f"c{n}" for n in range(12)]  # c2 before c10, not text order
    c.apply("rename", cluster="c3", name="alpha")
    assert list(c.clusters()) == ["alpha"] + [f"c{n}" for n in range(12) if n != 3]
