"""Split leakage (test images with a near-duplicate in train) and leak-free grouped splits."""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from natsort import natsorted

from visrec.data.dedup import (
    DEFAULT_HASH,
    DEFAULT_HASH_SIZE,
    DEFAULT_THRESHOLD,
    DatasetHashes,
    hamming_pairs,
    hash_dataset,
    nearest,
)
from visrec.errors import BadInput
from visrec.types import ImageRecord, LabeledSet

UNLABELED_KEY = "(unlabeled)"


def label_key(record: ImageRecord) -> str:
    """Stratum of a record: its label, ``a|b`` for multi-label, ``(unlabeled)`` for none."""
    return "|".join(record.labels) if record.labels else UNLABELED_KEY


@dataclass(frozen=True)
class LeakPair:
    """A test image and its nearest train image, ``distance`` bits apart."""

    test_id: str
    train_id: str
    distance: int


@dataclass(frozen=True)
class LeakageReport:
    """How many test images have a near-duplicate (``<= threshold`` bits) among the train images.

    ``per_label``: ``{label: {"leaked": k, "test": n}}``. ``pairs``: one ``LeakPair`` per leaked test image
    (its nearest train image), closest first. ``n_pairs``: all (test, train) pairs under the threshold.
    ``nearest_clean``: the smallest distance from a non-leaked test image to any train image (how much
    margin the threshold has), or None. ``unreadable``: ``(path, reason)`` of files that could not be hashed.
    """

    threshold: int
    hash_kind: str
    hash_bits: int
    n_train: int
    n_test: int
    n_leaked: int
    per_label: Mapping[str, Mapping[str, int]]
    pairs: tuple[LeakPair, ...]
    n_pairs: int
    nearest_clean: int | None = None
    unreadable: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def leaked_fraction(self) -> float:
        """``n_leaked / n_test`` (0.0 when there is no test image)."""
        return self.n_leaked / self.n_test if self.n_test else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (every field; pairs as ``[test_id, train_id, distance]``)."""
        return {
            "threshold": self.threshold,
            "hash": f"{self.hash_kind} {self.hash_bits} bits",
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_leaked": self.n_leaked,
            "leaked_fraction": round(self.leaked_fraction, 6),
            "per_label": {k: dict(v) for k, v in self.per_label.items()},
            "n_pairs": self.n_pairs,
            "nearest_clean": self.nearest_clean,
            "pairs": [[p.test_id, p.train_id, p.distance] for p in self.pairs],
            "unreadable": [list(u) for u in self.unreadable],
        }


def split_value(record: ImageRecord, split_field: str) -> str | None:
    """The record's value of ``split_field`` as text, or None when it has none (an empty manifest cell, a folder
    tree without split folders)."""
    value = record.field(split_field)
    return None if value is None or str(value) == "" else str(value)


def split_counts(dataset: LabeledSet, split_field: str) -> tuple[dict[str, int], int]:
    """Images per value of ``split_field`` (in order of first appearance) and the number with no value."""
    counts = Counter(split_value(r, split_field) for r in dataset.records)
    missing = counts.pop(None, 0)
    return {str(k): n for k, n in counts.items()}, missing


def describe_splits(counts: Mapping[str, int], no_split: int, split_field: str) -> str:
    """``"train 9, test 6; 3 images have no split value"`` for people (field named when nothing has a value)."""
    if not counts:
        return f"none (no image has a value in field {split_field!r})"
    text = ", ".join(f"{s} {n}" for s, n in counts.items())
    return text + (f"; {no_split} image{'s' if no_split != 1 else ''} with no split value" if no_split else "")


def _side_rows(dataset: LabeledSet, hashes: DatasetHashes, split_field: str, values: Sequence[str]) -> np.ndarray:
    wanted = set(values)
    split_of = {r.id: r.field(split_field) for r in dataset.records}
    return np.array([i for i, rid in enumerate(hashes.ids) if split_of.get(rid) in wanted], dtype=np.int64)


def leakage_report(
    dataset: LabeledSet,
    split_field: str = "split",
    train_values: Sequence[str] = ("train", "valid"),
    test_values: Sequence[str] = ("test",),
    threshold: int = DEFAULT_THRESHOLD,
    *,
    hashes: DatasetHashes | None = None,
    kind: str = DEFAULT_HASH,
    hash_size: int = DEFAULT_HASH_SIZE,
    workers: int = 2,
) -> LeakageReport:
    """Count test images that have a near-duplicate among the train images.

    ``split_field`` is a record field or manifest column (``"split"``, ``"grouped_split"``); records whose
    value is in ``train_values`` / ``test_values`` form the two sides (others are ignored). ``hashes``
    may be passed to reuse ``hash_dataset`` output; else they are computed (``kind``, ``hash_size``).
    Raises ``BadInput`` when either side is empty.
    """
    h = hashes if hashes is not None else hash_dataset(dataset, kind=kind, hash_size=hash_size, workers=workers)
    train, test = (_side_rows(dataset, h, split_field, v) for v in (train_values, test_values))
    if len(train) == 0 or len(test) == 0:
        found = describe_splits(*split_counts(dataset, split_field), split_field)
        raise BadInput(
            f"leakage check needs both sides: {split_field} in {tuple(train_values)} gave {len(train)} "
            f"images, in {tuple(test_values)} gave {len(test)}; values present: {found}"
        )
    idx, dist = nearest(h.hashes[test], h.hashes[train])
    leaked = dist <= threshold
    n_pairs = len(hamming_pairs(h.hashes[test], h.hashes[train], max_distance=threshold)[0])
    records = {r.id: r for r in dataset.records}
    per_label: dict[str, dict[str, int]] = defaultdict(lambda: {"leaked": 0, "test": 0})
    for row, is_leak in zip(test, leaked, strict=True):
        counts = per_label[label_key(records[h.ids[row]])]
        counts["test"] += 1
        counts["leaked"] += int(is_leak)
    pairs = sorted(
        (LeakPair(h.ids[test[k]], h.ids[train[idx[k]]], int(dist[k])) for k in np.flatnonzero(leaked)),
        key=lambda p: (p.distance, p.test_id),
    )
    return LeakageReport(
        threshold=threshold,
        hash_kind=h.kind,
        hash_bits=h.hash_size * h.hash_size,
        n_train=len(train),
        n_test=len(test),
        n_leaked=int(leaked.sum()),
        per_label={k: per_label[k] for k in natsorted(per_label)},
        pairs=tuple(pairs),
        n_pairs=n_pairs,
        nearest_clean=int(dist[~leaked].min()) if (~leaked).any() else None,
        unreadable=tuple((b.path, b.reason) for b in h.bad),
    )


def _groups_by_id(dataset: LabeledSet, groups: Mapping[str, Hashable] | Sequence[Hashable] | np.ndarray) -> dict:
    if isinstance(groups, Mapping):
        return {r.id: ("g", groups[r.id]) if r.id in groups else ("solo", r.id) for r in dataset.records}
    if len(groups) != len(dataset.records):
        raise BadInput(
            f"groups has {len(groups)} entries, expected one per record ({len(dataset.records)}) "
            "or a mapping {id: group}"
        )
    return {r.id: ("g", g.item() if isinstance(g, np.generic) else g) for r, g in zip(dataset, groups, strict=True)}


def _pick_test_groups(
    members: Sequence[tuple[Hashable, int]], test_fraction: float, every_nth: int | None
) -> set[Hashable]:
    """Choose the test groups among the shuffled ``(group, size)`` pairs of one label."""
    if every_nth is not None:
        return {g for k, (g, _) in enumerate(members) if k % every_nth == every_nth - 1}
    target = test_fraction * sum(size for _, size in members)
    chosen: set[Hashable] = set()
    taken = 0
    for g, size in members:
        if len(chosen) == len(members) - 1:
            break  # keep at least one group on the train side
        if taken + size / 2 <= target:  # take a group when at least half of it fits under the target
            chosen.add(g)
            taken += size
    if not chosen and target > 0 and len(members) > 1:
        chosen.add(min(members, key=lambda gs: gs[1])[0])  # every label with 2+ groups gets a test image
    return chosen


def grouped_split(
    dataset: LabeledSet,
    groups: Mapping[str, Hashable] | Sequence[Hashable] | np.ndarray,
    *,
    test_fraction: float | None = None,
    every_nth: int | None = None,
    seed: int = 0,
) -> dict[str, str]:
    """Split into ``{id: "train" | "test"}`` keeping every near-duplicate group on one side.

    ``groups``: ``{id: group}`` (ids missing from it are groups of their own) or one group per record
    (e.g. ``near_duplicate_groups`` output in dataset order). Stratified: each group is assigned to its
    most common label, and per label either about ``test_fraction`` of the images (default 0.2) or
    ``every_nth`` group goes to test, after a shuffle seeded by ``seed`` and the label name. A label with
    several groups always keeps one in train. Deterministic for equal inputs.
    """
    if test_fraction is not None and every_nth is not None:
        raise BadInput("give test_fraction or every_nth, not both")
    fraction = 0.2 if test_fraction is None else test_fraction
    if not 0.0 <= fraction < 1.0:
        raise BadInput(f"test_fraction must be in [0, 1), got {test_fraction}")
    if every_nth is not None and every_nth < 2:
        raise BadInput(f"every_nth must be >= 2 (every 2nd, 3rd... group to test), got {every_nth}")
    if seed < 0:
        raise BadInput(f"seed must be >= 0, got {seed}")
    group_of = _groups_by_id(dataset, groups)
    members: dict[Hashable, list[ImageRecord]] = defaultdict(list)
    for r in dataset.records:
        members[group_of[r.id]].append(r)
    strata: dict[str, list[tuple[Hashable, int]]] = defaultdict(list)
    for g, recs in members.items():
        counts = Counter(label_key(r) for r in recs)
        top = max(counts.values())
        strata[natsorted(k for k, c in counts.items() if c == top)[0]].append((g, len(recs)))
    test_groups: set[Hashable] = set()
    for key in natsorted(strata):
        ordered = natsorted(strata[key], key=lambda gs: str(gs[0]))
        rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8", "surrogateescape"))])
        shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
        test_groups |= _pick_test_groups(shuffled, fraction, every_nth)
    return {r.id: "test" if group_of[r.id] in test_groups else "train" for r in dataset.records}
