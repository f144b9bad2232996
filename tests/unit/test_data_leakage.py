"""Near-duplicates and split leakage: exact against brute force, synthetic copies, the real naruto leak."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_images import class_colour, make_bad_images, make_near_duplicate, noise_image
from tests.shared_data import SHARED_DATA
from visrec.data import (
    DEFAULT_THRESHOLD,
    grouped_split,
    hamming_pairs,
    hash_dataset,
    image_hash,
    leakage_report,
    load_dataset,
    near_duplicate_groups,
)
from visrec.data.dedup import nearest
from visrec.errors import BadInput, DimensionMismatch
from visrec.types import ImageRecord, LabeledSet

SHARED = SHARED_DATA


def _brute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ba, bb = np.unpackbits(a, axis=1).astype(np.int32), np.unpackbits(b, axis=1).astype(np.int32)
    return (ba[:, None, :] != bb[None, :, :]).sum(axis=2)


@pytest.mark.parametrize("nbytes", [32, 8, 3])
def test_hamming_pairs_and_nearest_match_brute_force(nbytes: int) -> None:
    rng = np.random.default_rng(nbytes)
    a = rng.integers(0, 256, (120, nbytes), dtype=np.uint8)
    a[7] = a[3]
    a[9] = a[3] ^ 1
    full = _brute(a, a)
    thr = nbytes * 8 // 3
    i, j, d = hamming_pairs(a, max_distance=thr)
    want = set(zip(*np.nonzero(np.triu(full <= thr, 1)), strict=True))
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want and (d == full[i, j]).all()
    b = rng.integers(0, 256, (30, nbytes), dtype=np.uint8)
    cross = _brute(b, a)
    i, j, _ = hamming_pairs(b, a, max_distance=thr)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == set(zip(*np.nonzero(cross <= thr), strict=True))
    idx, dist = nearest(b, a)
    assert (dist == cross.min(axis=1)).all() and (cross[np.arange(30), idx] == dist).all()


def test_groups_are_single_link_components_numbered_in_order() -> None:
    base = np.zeros((6, 32), np.uint8)
    base[1, 0] = 0b1111  # 4 bits from 0
    base[2, :2] = 0xFF  # 16 bits from 0, 12 from 1: chained to 0 through 1 at threshold 12
    base[3:] = 0xFF  # far away: its own group
    base[5, 0] = 0x0F
    groups = near_duplicate_groups(base, threshold=12)
    assert groups.tolist() == [0, 0, 0, 1, 1, 1]
    assert near_duplicate_groups(base, threshold=3).tolist() == [0, 1, 2, 3, 3, 4]
    assert near_duplicate_groups(np.zeros((0, 32), np.uint8)).shape == (0,)
    with pytest.raises(DimensionMismatch):
        near_duplicate_groups(np.zeros(32, np.uint8))
    with pytest.raises(BadInput):
        near_duplicate_groups(base, threshold=-1)


def test_thousands_of_hashes_group_in_blocks() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, (6000, 32), dtype=np.uint8)
    hashes[1::3] = hashes[0::3] ^ (rng.random((2000, 32)) < 0.03).astype(np.uint8)  # ~8 bits apart
    groups = near_duplicate_groups(hashes, DEFAULT_THRESHOLD)
    assert groups.max() + 1 == 4000
    assert (groups[0::3] == groups[1::3]).all()


def _dataset_with_copies(root: Path) -> LabeledSet:
    """6 unrelated originals (train) and, for 3 of them, a noised re-encoded copy (test)."""
    recs = []
    for i in range(6):
        path = root / f"orig_{i}.png"
        label = "even" if i % 2 == 0 else "odd"
        Image.fromarray(noise_image(64, seed=100 + i, base=class_colour(i, 6))).save(path)
        recs.append(ImageRecord(path.name, path.name, (label,), "train"))
        if i < 3:
            copy = make_near_duplicate(path, root / f"copy_{i}.jpg", noise=6.0, quality=70, seed=i)
            recs.append(ImageRecord(copy.name, copy.name, (label,), "test"))
    Image.fromarray(noise_image(64, seed=999)).save(root / "fresh.png")
    recs.append(ImageRecord("fresh.png", "fresh.png", ("odd",), "test"))
    return LabeledSet(root, tuple(recs), ("even", "odd"), "manifest")


def test_noised_reencoded_copy_groups_and_unrelated_images_do_not(tmp_path: Path) -> None:
    ds = _dataset_with_copies(tmp_path)
    hashes = hash_dataset(ds)
    assert hashes.hashes.shape == (len(ds), 32) and not hashes.bad
    groups = dict(zip(hashes.ids, near_duplicate_groups(hashes.hashes).tolist(), strict=True))
    for i in range(3):
        assert groups[f"orig_{i}.png"] == groups[f"copy_{i}.jpg"]
    originals = [groups[f"orig_{i}.png"] for i in range(6)] + [groups["fresh.png"]]
    assert len(set(originals)) == 7


@pytest.mark.parametrize("kind", ["dhash", "phash"])
def test_image_hash_kinds(tmp_path: Path, kind: str) -> None:
    img = noise_image(48, seed=1)
    h = image_hash(img, kind=kind, hash_size=8)
    assert h.shape == (8,) and h.dtype == np.uint8
    assert np.array_equal(h, image_hash(Image.fromarray(img), kind=kind, hash_size=8))
    with pytest.raises(BadInput):
        image_hash(img, kind="ahash")


def test_leakage_report_counts_copies_per_label(tmp_path: Path) -> None:
    ds = _dataset_with_copies(tmp_path)
    report = leakage_report(ds, train_values=("train",))
    assert (report.n_train, report.n_test, report.n_leaked) == (6, 4, 3)
    assert report.per_label == {"even": {"leaked": 2, "test": 2}, "odd": {"leaked": 1, "test": 2}}
    assert {(p.test_id, p.train_id) for p in report.pairs} == {(f"copy_{i}.jpg", f"orig_{i}.png") for i in range(3)}
    assert report.nearest_clean is not None and report.nearest_clean > report.threshold
    assert report.leaked_fraction == pytest.approx(0.75)
    assert json.loads(json.dumps(report.to_dict()))["n_leaked"] == 3
    with pytest.raises(BadInput, match="values present"):
        leakage_report(ds, test_values=("holdout",))


def test_leakage_report_lists_unreadable_files(tmp_path: Path) -> None:
    ds = _dataset_with_copies(tmp_path)
    bad = make_bad_images(tmp_path / "bad")
    extra = [ImageRecord(f"bad/{p.name}", f"bad/{p.name}", ("odd",), "train") for p in bad.values()]
    report = leakage_report(ds.subset([*ds.records, *extra]), train_values=("train",))
    assert report.n_leaked == 3 and sorted(r for _, r in report.unreadable) == sorted(bad)


def _grouped_dataset(n_groups: int = 40) -> tuple[LabeledSet, dict[str, int]]:
    recs, groups = [], {}
    for g in range(n_groups):
        label = ("a", "b", "c")[g % 3]
        for k in range(1 + g % 4):
            rid = f"{label}/g{g}_{k}.jpg"
            recs.append(ImageRecord(rid, rid, (label,)))
            groups[rid] = g
    return LabeledSet(Path("."), tuple(recs), ("a", "b", "c")), groups


def test_grouped_split_keeps_groups_whole_and_is_stratified() -> None:
    ds, groups = _grouped_dataset()
    split = grouped_split(ds, groups, test_fraction=0.25, seed=3)
    assert set(split) == {r.id for r in ds}
    sides: dict[int, set[str]] = {}
    for rid, side in split.items():
        sides.setdefault(groups[rid], set()).add(side)
    assert all(len(s) == 1 for s in sides.values())
    per_label = Counter((r.labels[0], split[r.id]) for r in ds)
    for label in ("a", "b", "c"):
        total = per_label[(label, "train")] + per_label[(label, "test")]
        assert 0.1 * total <= per_label[(label, "test")] <= 0.4 * total
    assert grouped_split(ds, groups, test_fraction=0.25, seed=3) == split
    assert grouped_split(ds, groups, test_fraction=0.25, seed=4) != split


def test_grouped_split_every_nth_and_array_groups() -> None:
    ds, groups = _grouped_dataset(30)
    array = np.array([groups[r.id] for r in ds])
    split = grouped_split(ds, array, every_nth=5)
    assert split == grouped_split(ds, groups, every_nth=5)
    test_groups = {groups[i] for i, s in split.items() if s == "test"}
    assert len(test_groups) == 6  # 10 groups per label, every 5th -> 2 per label
    with pytest.raises(BadInput):
        grouped_split(ds, array[:-1], every_nth=5)
    with pytest.raises(BadInput):
        grouped_split(ds, groups, every_nth=5, test_fraction=0.2)
    with pytest.raises(BadInput):
        grouped_split(ds, groups, test_fraction=1.5)


def test_grouped_split_removes_the_leak(tmp_path: Path) -> None:
    ds = _dataset_with_copies(tmp_path)
    hashes = hash_dataset(ds)
    groups = dict(zip(hashes.ids, near_duplicate_groups(hashes.hashes).tolist(), strict=True))
    split = grouped_split(ds, groups, test_fraction=0.4, seed=0)
    relabeled = ds.subset([replace(r, extra={"gs": split[r.id]}) for r in ds])
    report = leakage_report(relabeled, split_field="gs", train_values=("train",), hashes=hashes)
    assert report.n_test > 0 and report.n_leaked == 0


# -------------------------------------------------------------------------------------- real data


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is not present")
    return path


def test_real_naruto_leak_is_found_by_default_settings() -> None:
    ds = load_dataset(_shared("naruto_roboflow"))
    report = leakage_report(ds)
    # README: 19 of 30 by its own count; the manifest's dup_group puts 20 test images in a group with a
    # train/valid image, and that is what the default pHash-16 / 64-bit setting finds.
    train_groups = {r.group for r in ds if r.split != "test"}
    by_dup_group = sum(r.group in train_groups for r in ds if r.split == "test")
    assert report.n_test == 30 and report.n_leaked == by_dup_group == 20
    assert report.per_label["Naruto"]["leaked"] >= 5
    assert all(p.distance <= DEFAULT_THRESHOLD for p in report.pairs)


def test_real_naruto_threshold_never_merges_different_labels() -> None:
    ds = load_dataset(_shared("naruto_roboflow"))
    hashes = hash_dataset(ds)
    labels = np.array([r.label for r in ds])
    i, j, _ = hamming_pairs(hashes.hashes, max_distance=DEFAULT_THRESHOLD)
    assert len(i) > 100 and (labels[i] == labels[j]).all()


def test_real_cifar_has_no_cross_label_pair_under_the_threshold() -> None:
    ds = load_dataset(_shared("cifar10_subset"))
    hashes = hash_dataset(ds)
    labels = np.array([r.label for r in ds])
    i, j, _ = hamming_pairs(hashes.hashes, max_distance=DEFAULT_THRESHOLD)
    assert int((labels[i] != labels[j]).sum()) == 0


def test_groups_around_seeds_match_the_full_grouping_for_the_seeds() -> None:
    """The calibration asks only for the groups of the items it scores: each seed's whole group (chains through
    other items included) must be what the all-pairs grouping gives, every other item alone."""
    from visrec.data.dedup import groups_around

    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (400, 32), dtype=np.uint8)
    for start in range(0, 400, 40):  # chains of near-duplicates: each a few bits from the previous one
        for k in range(start + 1, start + 5):
            flip = np.unpackbits(base[k - 1])
            flip[rng.choice(256, 20, replace=False)] ^= 1
            base[k] = np.packbits(flip)
    full = near_duplicate_groups(base, threshold=24)
    assert full.max() < 399  # the chains did join
    seeds = np.array([0, 3, 41, 100, 399])
    around = groups_around(base, seeds, threshold=24)
    for s in seeds:
        assert set(np.flatnonzero(around == around[s])) == set(np.flatnonzero(full == full[s]))
    members = {int(i) for s in seeds for i in np.flatnonzero(full == full[s])}
    others = [i for i in range(400) if i not in members]
    assert len(set(around[others].tolist())) == len(others)  # each a group of its own
    assert groups_around(base, np.arange(400), threshold=24).tolist() == full.tolist()
