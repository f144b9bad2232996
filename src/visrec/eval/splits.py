"""Choose the train and test parts of a labeled dataset for an evaluation, and check them for leakage.

``split_field="auto"`` uses a manifest ``grouped_split`` column when there is one, else cuts a leak-free split
from near-duplicate groups (whole groups go to one side); ``"regroup"`` always cuts that split. Any other field
(``split``, a manifest column) is used as given, and the near-duplicates between its train and test sides are
counted: consecutive video frames on both sides make accuracy measure memorisation, and the report says so at
the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from visrec.errors import BadInput
from visrec.types import ImageRecord, LabeledSet

AUTO = "auto"
REGROUP = "regroup"
"""Always cut visrec's own near-duplicate-grouped split, even where the manifest has a ``grouped_split`` column."""
AUTO_FIELD = "auto_grouped_split"


@dataclass(frozen=True)
class SplitPlan:
    """The two sides of an evaluation. ``test`` holds labeled images only; ``leakage`` is
    :meth:`visrec.data.LeakageReport.to_dict` of the chosen split (None when not checked); ``no_split`` counts
    the images left out because they have no value in the split field."""

    train: LabeledSet
    test: LabeledSet
    field: str
    rule: str
    leakage: dict[str, Any] | None = None
    no_split: int = 0

    @property
    def n_leaked(self) -> int:
        return int(self.leakage["n_leaked"]) if self.leakage else 0

    def warnings(self, dataset: str) -> list[str]:
        """Human lines for the top of a report (empty when the split is clean)."""
        if not self.n_leaked or self.leakage is None:
            return []
        return [
            f"LEAKAGE: {self.n_leaked} of {self.leakage['n_test']} test images have a near-duplicate among the "
            f"train images (split field {self.field!r}); their accuracy measures memorisation, not recognition. "
            f"Use a leak-free grouped split: visrec eval {dataset} --split-field "
            f"{REGROUP if self.field in ('grouped_split', AUTO_FIELD) else AUTO}  (or write one with: "
            f"visrec data check {dataset} --write-split grouped.csv)"
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "rule": self.rule,
            "train": len(self.train),
            "test": len(self.test),
            "no_split": self.no_split,
            "n_leaked": self.n_leaked,
        }


def _sides(
    ds: LabeledSet, key: str, train_values: Sequence[str], test_values: Sequence[str]
) -> tuple[LabeledSet, LabeledSet]:
    from visrec.data import describe_splits, split_counts, split_value

    train = [r for r in ds.records if split_value(r, key) in train_values]
    test = [r for r in ds.records if split_value(r, key) in test_values and r.labels]
    if not train or not test:
        found = describe_splits(*split_counts(ds, key), key)
        raise BadInput(
            f"{ds.root}: split field {key!r} gave {len(train)} train images (values {list(train_values)}) and "
            f"{len(test)} labeled test images (values {list(test_values)}); values present: {found}. "
            "Pick the field with --split-field (or 'auto' for a leak-free grouped split) and the values with "
            "--train/--test"
        )
    return ds.subset(train), ds.subset(test)


def _auto_grouped(ds: LabeledSet, hashes: Any, threshold: int) -> LabeledSet:
    from visrec.data import grouped_split, near_duplicate_groups

    groups = dict(zip(hashes.ids, near_duplicate_groups(hashes.hashes, threshold).tolist(), strict=True))
    side = grouped_split(ds, groups)
    recs: list[ImageRecord] = [
        replace(r, extra={**r.extra, AUTO_FIELD: side.get(r.id, "unreadable")}) for r in ds.records
    ]
    return ds.subset(recs)


def plan_split(
    ds: LabeledSet,
    split_field: str = AUTO,
    train_values: Sequence[str] = ("train", "valid"),
    test_values: Sequence[str] = ("test",),
    threshold: int | None = None,
    check_leakage: bool = True,
) -> SplitPlan:
    """Train and test sides of ``ds`` by ``split_field`` (see the module docstring), with a leakage check."""
    from visrec.data import DEFAULT_THRESHOLD, hash_dataset, leakage_report, split_counts

    th = DEFAULT_THRESHOLD if threshold is None else threshold
    has_grouped = any("grouped_split" in r.extra for r in ds.records)
    regroup = split_field == REGROUP or (split_field == AUTO and not has_grouped)
    hashes = hash_dataset(ds) if check_leakage or regroup else None
    if split_field == AUTO and has_grouped:
        key, rule = "grouped_split", "manifest column grouped_split"
    elif split_field in (AUTO, REGROUP):
        ds = _auto_grouped(ds, hashes, th)
        key, rule, train_values, test_values = AUTO_FIELD, "automatic near-duplicate-grouped split", ["train"], ["test"]
    else:
        key, rule = split_field, f"field {split_field}"
    train, test = _sides(ds, key, train_values, test_values)
    no_split = split_counts(ds, key)[1]
    leak = None
    if hashes is not None:
        both = ds.subset(list(train.records) + list(test.records))
        rep = leakage_report(both, key, list(train_values), list(test_values), th, hashes=hashes)
        leak = rep.to_dict()
        leak["pairs"] = leak["pairs"][:20]
    return SplitPlan(train, test, key, rule, leak, no_split)
