"""Calibration on synthetic clusters: known classes are accepted, new ones come out unknown.

Known classes are Gaussian clusters on the unit sphere made of "scenes" of 3 near-duplicate frames (the
near-duplicate groups); novel classes are drawn the same way but never indexed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from visrec.classify import (
    BlendClassifier,
    Calibration,
    CalibrationOptions,
    KnnClassifier,
    PrototypeClassifier,
    ZeroShotClassifier,
    calibrate_held_out,
    calibrate_leave_one_group_out,
)
from visrec.classify.loo import LooData, chunked_left_out
from visrec.errors import BadInput, EmptyDataset
from visrec.types import Prediction

D = 64


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class World:
    vectors: np.ndarray
    labels: list[tuple[str, ...]]
    groups: list[str | None]
    test: np.ndarray
    test_labels: list[str]
    novel: np.ndarray
    far: np.ndarray
    centres: np.ndarray


def make_world(seed: int = 0, n_cls: int = 8, scenes: int = 12, frames: int = 3) -> World:
    rng = np.random.default_rng(seed)
    base = _unit(rng.normal(size=D))
    centres = _unit(base + rng.normal(size=(n_cls + 3, D)) / np.sqrt(D))  # shared "style": cos ~0.5

    def draw(c: int, n: int, f: int) -> np.ndarray:
        sc = _unit(centres[c] + 0.8 * rng.normal(size=(n, D)) / np.sqrt(D))
        return _unit(np.repeat(sc, f, axis=0) + 0.15 * rng.normal(size=(n * f, D)) / np.sqrt(D))

    vecs = np.concatenate([draw(c, scenes, frames) for c in range(n_cls)])
    labels = [(f"class{c}",) for c in range(n_cls) for _ in range(scenes * frames)]
    groups: list[str | None] = [f"{c}-{s}" for c in range(n_cls) for s in range(scenes) for _ in range(frames)]
    test = np.concatenate([draw(c, 10, 1) for c in range(n_cls)])
    test_labels = [f"class{c}" for c in range(n_cls) for _ in range(10)]
    novel = np.concatenate([draw(n_cls + j, 10, 1) for j in range(3)])
    far = _unit(-base + 0.8 * rng.normal(size=(20, D)) / np.sqrt(D))
    return World(vecs, labels, groups, test, test_labels, novel, far, centres)


def knn_predict(clf: KnnClassifier, w: World, queries: np.ndarray) -> list[Prediction]:
    sims = queries @ w.vectors.T
    top = np.argsort(-sims, axis=1)[:, : clf.k]
    return clf.predict_from_neighbors([[w.labels[j] for j in row] for row in top], np.take_along_axis(sims, top, 1))


def rates(preds: list[Prediction], truth: list[str]) -> tuple[float, float]:
    """(share accepted, share of accepted that are right)."""
    acc = [p for p, t in zip(preds, truth, strict=True) if p.label is not None]
    right = sum(p.label == t for p, t in zip(preds, truth, strict=True))
    return len(acc) / len(preds), (right / len(acc) if acc else float("nan"))


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def test_knn_calibration_accepts_known_classes_and_rejects_new_ones(world: World) -> None:
    knn = KnnClassifier()
    cal = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, knn)
    assert cal.mode == "knn" and cal.method == "leave-one-group-out" and cal.target_met
    assert cal.n_held_out == len(world.labels) and cal.n_unknown == len(world.labels)
    assert cal.precision >= 0.95 and cal.params["k"] == 10
    accepted, precision = rates(cal.apply(knn_predict(knn, world, world.test)), world.test_labels)
    assert accepted >= 0.85 and precision >= 0.95
    novel = cal.apply(knn_predict(knn, world, world.novel))
    assert np.mean([p.label is None for p in novel]) >= 0.8
    assert all(p.candidate.startswith("class") for p in novel)  # the candidate is kept
    far = cal.apply(knn_predict(knn, world, world.far))
    assert np.mean([p.label is None for p in far]) >= 0.95
    known = cal.apply(knn_predict(knn, world, world.test))
    assert np.mean([p.calibrated for p in known]) > np.mean([p.calibrated for p in novel]) + 0.3
    assert all(p.threshold == cal.threshold_for(p.candidate) for p in known)


def test_ignoring_near_duplicate_groups_makes_scores_look_perfect(world: World) -> None:
    knn = KnnClassifier()
    opts = CalibrationOptions(simulate_unknown=False)
    with_groups = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, knn, opts)
    no_groups = calibrate_leave_one_group_out(world.vectors, world.labels, None, knn, opts)
    preds = knn_predict(knn, world, world.test)
    assert rates(with_groups.apply(preds), world.test_labels)[0] >= 0.85
    # each item's twin frame answers for it: thresholds sit at near-duplicate similarity, new images fail
    assert rates(no_groups.apply(preds), world.test_labels)[0] <= 0.2
    assert no_groups.global_threshold > with_groups.global_threshold + 0.1


def test_simulated_unknowns_raise_thresholds_and_their_weight_is_configurable(world: World) -> None:
    knn = KnnClassifier()
    cals = [
        calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, knn, CalibrationOptions(**o))
        for o in ({"simulate_unknown": False}, {"unknown_weight": 0.1}, {"unknown_weight": 1.0})
    ]
    assert cals[0].n_unknown == 0 and cals[2].n_unknown == len(world.labels)
    novel_unknown = [np.mean([p.label is None for p in c.apply(knn_predict(knn, world, world.novel))]) for c in cals]
    assert novel_unknown[1] <= novel_unknown[2]
    assert cals[2].unknown_rejected >= 0.9


def test_prototype_calibration_works_the_same_way(world: World) -> None:
    clf = PrototypeClassifier().fit(world.vectors, world.labels)
    cal = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, PrototypeClassifier())
    assert cal.mode == "prototype"
    accepted, precision = rates(cal.apply(clf.predict(world.test)), world.test_labels)
    assert accepted >= 0.8 and precision >= 0.95
    assert np.mean([p.label is None for p in cal.apply(clf.predict(world.novel))]) >= 0.8


def test_left_out_prototypes_match_brute_force_recomputation(world: World) -> None:
    rows = np.array([0, 1, 50, 200])
    data = LooData.build(world.vectors, world.labels, world.groups)
    for remove_class in (False, True):
        fast = chunked_left_out(PrototypeClassifier(top_k=8), data, rows, remove_class, chunk_size=3)
        for r, p in zip(rows, fast, strict=True):
            keep = [i for i in range(len(world.labels)) if world.groups[i] != world.groups[r]]
            if remove_class:
                keep = [i for i in keep if world.labels[i] != world.labels[r]]
            ref = PrototypeClassifier(top_k=8).fit(world.vectors[keep], [world.labels[i] for i in keep])
            (expected,) = ref.predict(world.vectors[r : r + 1])
            assert p.candidate == expected.candidate
            assert dict(p.top_k) == pytest.approx(dict(expected.top_k), abs=1e-5)


def test_left_out_knn_never_sees_its_own_group_or_class(world: World) -> None:
    rows = np.arange(0, len(world.labels), 17)
    data = LooData.build(world.vectors, world.labels, world.groups)
    knn = KnnClassifier(k=5, score="similarity")
    for remove_class in (False, True):
        preds = chunked_left_out(knn, data, rows, remove_class, chunk_size=4)
        for r, p in zip(rows, preds, strict=True):
            sims = world.vectors @ world.vectors[r]
            hidden = [
                world.groups[i] == world.groups[r] or (remove_class and world.labels[i] == world.labels[r])
                for i in range(len(sims))
            ]
            sims[np.array(hidden)] = -np.inf
            j = int(np.argmax(sims))
            assert p.candidate == world.labels[j][0] and p.score == pytest.approx(float(sims[j]), abs=1e-5)
            assert not remove_class or p.candidate != world.labels[r][0]


def test_zero_shot_and_blend_calibrate_with_joint_vectors(world: World) -> None:
    classes = [f"class{c}" for c in range(8)]
    zs = ZeroShotClassifier(classes, world.centres[:8], score="cosine")
    cal = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, zs, joint=world.vectors)
    assert cal.mode == "zeroshot"
    assert rates(cal.apply(zs.predict(world.test)), world.test_labels)[1] >= 0.95
    blend = BlendClassifier(zs, PrototypeClassifier().fit(world.vectors, world.labels), alpha=0.5)
    bcal = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, blend, joint=world.vectors)
    accepted, precision = rates(bcal.apply(blend.predict(world.test)), world.test_labels)
    assert bcal.mode == "blend" and precision >= 0.9 and accepted >= 0.5
    with pytest.raises(BadInput, match="joint"):
        calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, zs)


def test_sampling_caps_the_number_of_queries(world: World) -> None:
    opts = CalibrationOptions(max_queries=50, seed=1)
    cal = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, KnnClassifier(), opts)
    assert cal.n_held_out == 50 and cal.n_unknown == 50
    again = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, KnnClassifier(), opts)
    assert again.to_dict() == cal.to_dict()


def test_calibration_json_round_trip_gives_identical_answers(world: World) -> None:
    knn = KnnClassifier()
    cal = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, knn)
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict(), allow_nan=False)))
    preds = knn_predict(knn, world, np.concatenate([world.test, world.novel]))
    assert [p.to_dict() for p in again.apply(preds)] == [p.to_dict() for p in cal.apply(preds)]
    with pytest.raises(BadInput, match="schema"):
        Calibration.from_dict({**cal.to_dict(), "schema": 99})
    with pytest.raises(BadInput, match="malformed"):
        Calibration.from_dict({k: v for k, v in cal.to_dict().items() if k != "thresholds"})


def test_apply_refuses_predictions_of_another_mode(world: World) -> None:
    cal = calibrate_leave_one_group_out(world.vectors, world.labels, world.groups, KnnClassifier())
    protos = PrototypeClassifier().fit(world.vectors, world.labels).predict(world.test[:2])
    with pytest.raises(BadInput, match="mode"):
        cal.apply(protos)


def test_held_out_calibration_from_predictions(world: World) -> None:
    knn = KnnClassifier()
    preds = knn_predict(knn, world, world.test)
    novel = knn_predict(knn, world, world.novel)
    cal = calibrate_held_out(preds, [(t,) for t in world.test_labels], unknown_predictions=novel)
    assert cal.method == "held-out" and cal.n_held_out == 80 and cal.n_unknown == 30
    assert cal.precision >= 0.95 and cal.coverage >= 0.8 and cal.unknown_rejected >= 0.8
    skipped = calibrate_held_out(preds[:3], [("class0",), (), ("class0",)])
    assert skipped.n_held_out == 2
    with pytest.raises(BadInput, match="one per prediction"):
        calibrate_held_out(preds, [("class0",)])
    with pytest.raises(EmptyDataset):
        calibrate_leave_one_group_out(world.vectors[:2], [(), ()], None)


def test_left_out_prototype_cosines_with_multi_label_and_unlabeled_group_members() -> None:
    from visrec.classify.loo import _prototype_cosines

    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 12))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels: list[tuple[str, ...]] = [(f"c{i % 4}",) for i in range(60)]
    labels[3], labels[10], labels[11] = ("c0", "c2"), (), ("c5",)  # c5 lives in one group only
    groups = [f"g{i // 3}" for i in range(60)]
    groups[11] = groups[10] = "g-c5"
    data = LooData.build(x, labels, groups)
    rows = np.array([0, 3, 4, 10, 11, 30, 59])
    for remove_class in (False, True):
        got = _prototype_cosines(data, rows, remove_class)
        for r, row in zip(rows, got, strict=True):
            keep = [i for i in range(60) if groups[i] != groups[r]]
            for j, c in enumerate(data.classes):
                members = [i for i in keep if c in labels[i]]
                if (remove_class and c in labels[r]) or not members:
                    assert row[j] == -np.inf, (r, c)
                    continue
                mean = x[members].astype(np.float64).sum(axis=0)
                assert row[j] == pytest.approx(float(x[r] @ mean / np.linalg.norm(mean)), abs=1e-9), (r, c)
