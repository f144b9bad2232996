"""Cached embeddings to train on: an index's stored vectors with their labels, cut into train / val / test.

Training never runs the image encoder: it reads the vectors an index already holds (a dataset is first indexed
with :func:`visrec.index.writer.build_index`, which embeds each image once and resumes if interrupted). The three sides
are leak-free: near-duplicate groups (the pHash the index stores per image) never straddle two sides.

* test: ``split_field="auto"`` takes the manifest column ``grouped_split`` when the images have one, else cuts
  a grouped split from the near-duplicate groups (:func:`visrec.data.grouped_split`); any other field is used
  as given (values ``train_values`` / ``test_values``).
* val: a grouped split of the train side again (``val_fraction`` of it), for early stopping. The test side is
  only used for the before/after figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.types import ImageRecord, LabeledSet

AUTO = "auto"
SIDES = ("train", "val", "test")


@dataclass(frozen=True)
class EmbeddingSplit:
    """Labeled embeddings and the side of each row.

    ``vectors``: ``(n, d)`` float32 unit rows; ``labels``: ``(n,)`` int64 index into ``classes``; ``side``:
    ``(n,)`` str, one of ``train`` / ``val`` / ``test``; ``ids``: the index's item ids; ``encoder``: the
    manifest's encoder entry (``name``, ``fingerprint``, ``describe``); ``rule``: how the test side was chosen.
    """

    vectors: np.ndarray
    labels: np.ndarray
    side: np.ndarray
    ids: tuple[str, ...]
    classes: tuple[str, ...]
    encoder: dict[str, Any]
    rule: str

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != n or len(self.labels) != n or len(self.side) != n:
            raise BadInput(
                f"split arrays disagree: vectors {self.vectors.shape}, {len(self.labels)} labels, "
                f"{len(self.side)} sides, {n} ids"
            )
        for s in SIDES:
            if not (self.side == s).any():
                raise BadInput(f"the {s} side is empty ({self.counts()}); label more images or change the split")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, *sides: str) -> np.ndarray:
        """Row numbers of the given sides, in index order."""
        return np.flatnonzero(np.isin(self.side, list(sides)))

    def counts(self) -> dict[str, int]:
        return {s: int((self.side == s).sum()) for s in SIDES}

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, **self.counts(), "classes": list(self.classes)}


def _records(ids: Sequence[str], metas: Sequence[dict[str, Any]]) -> list[ImageRecord]:
    return [
        ImageRecord(
            id=i,
            path=m.get("path", i),
            labels=tuple(m.get("labels", ())),
            split=m.get("split"),
            group=m.get("group"),
            extra={k: str(v) for k, v in (m.get("extra") or {}).items()},
        )
        for i, m in zip(ids, metas, strict=True)
    ]


def _groups(records: Sequence[ImageRecord]) -> dict[str, str]:
    """Near-duplicate group of each record from the pHash the index stored (its own group when it has none)."""
    from visrec.data import near_duplicate_groups

    have = [r for r in records if r.extra.get("phash")]
    out = {r.id: f"solo:{r.id}" for r in records}
    if have:
        packed = np.stack([np.frombuffer(bytes.fromhex(r.extra["phash"]), np.uint8) for r in have])
        for r, g in zip(have, near_duplicate_groups(packed).tolist(), strict=True):
            out[r.id] = f"p{g}"
    return out


def _test_side(
    ds: LabeledSet, groups: dict[str, str], field: str, train_values: Sequence[str], test_values: Sequence[str]
) -> tuple[dict[str, str], str]:
    from visrec.data import grouped_split

    if field == AUTO and any("grouped_split" in r.extra for r in ds.records):
        field = "grouped_split"
    if field == AUTO:
        return grouped_split(ds, groups), "automatic near-duplicate-grouped split"
    side = {}
    for r in ds.records:
        v = str(r.field(field))
        side[r.id] = "test" if v in test_values else "train" if v in train_values else "unused"
    return side, f"field {field}"


def split_embeddings(
    ids: Sequence[str],
    vectors: np.ndarray,
    metas: Sequence[dict[str, Any]],
    encoder: dict[str, Any],
    split_field: str = AUTO,
    train_values: Sequence[str] = ("train", "valid"),
    test_values: Sequence[str] = ("test",),
    val_fraction: float = 0.2,
    seed: int = 0,
    source: str = "the index",
) -> EmbeddingSplit:
    """Cut labeled items into train / val / test (see the module docstring). Multi-label items use their first
    label; unlabeled items are left out. ``source`` (the index folder) is named in the refusals: fewer than two
    labeled classes, or an empty side."""
    from visrec.data import grouped_split

    keep = [i for i, m in enumerate(metas) if m.get("labels")]
    recs = _records([ids[i] for i in keep], [metas[i] for i in keep])
    classes = tuple(sorted({r.labels[0] for r in recs}))
    _refuse_few_classes(source, len(ids), len(recs), classes)
    ds = LabeledSet(Path("."), tuple(recs), tuple(sorted({x for r in recs for x in r.labels})))
    groups = _groups(recs)
    side, rule = _test_side(ds, groups, split_field, train_values, test_values)
    train_ds = ds.subset([r for r in recs if side[r.id] == "train"])
    if len(train_ds):
        val = grouped_split(train_ds, groups, test_fraction=val_fraction, seed=seed)
        side.update({i: "val" for i, s in val.items() if s == "test"})
    used = [j for j, r in enumerate(recs) if side[r.id] in SIDES]
    _refuse_empty_side(source, [side[recs[j].id] for j in used], rule, ds, split_field)
    pos = {c: k for k, c in enumerate(classes)}
    return EmbeddingSplit(
        vectors=np.ascontiguousarray(np.asarray(vectors, np.float32)[[keep[j] for j in used]]),
        labels=np.array([pos[recs[j].labels[0]] for j in used], np.int64),
        side=np.array([side[recs[j].id] for j in used]),
        ids=tuple(recs[j].id for j in used),
        classes=classes,
        encoder=dict(encoder),
        rule=rule,
    )


def _refuse_few_classes(source: str, n_items: int, n_labeled: int, classes: Sequence[str]) -> None:
    if len(classes) >= 2:
        return
    found = f"1 labeled class ({classes[0]!r}, {n_labeled} items)" if classes else "no labeled class"
    raise BadInput(
        f"{source} holds {found} among its {n_items} items; fine-tuning needs at least two labeled classes. "
        "Index images of two or more labels (a folder per label, or a manifest with a label column) and "
        "fine-tune that index: visrec finetune DATASET --out ADAPTER"
    )


def _refuse_empty_side(source: str, sides: Sequence[str], rule: str, ds: LabeledSet, split_field: str) -> None:
    counts = {s: sides.count(s) for s in SIDES}
    empty = [s for s in SIDES if not counts[s]]
    if not empty:
        return
    values = ""
    if split_field != AUTO:
        from visrec.data import describe_splits, split_counts

        values = f"; values of {split_field}: {describe_splits(*split_counts(ds, split_field), split_field)}"
    raise BadInput(
        f"{source}: the {', '.join(empty[:-1]) + ' and ' if len(empty) > 1 else ''}{empty[-1]} "
        f"side{'s are' if len(empty) > 1 else ' is'} empty "
        f"({', '.join(f'{n} {s}' for s, n in counts.items())} labeled images; {rule}{values}). Label more "
        "images, or choose the split with --split-field, --train and --test"
    )


def read_index(path: str | Path) -> tuple[list[str], np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """Every item of an index: ids, ``(n, d)`` float32 vectors, metadata, and the manifest's encoder entry."""
    from visrec.index import Index

    idx = Index(path, mmap=False)
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    for b_ids, b_vecs, b_metas in idx.store.export():
        ids += b_ids
        vecs.append(np.asarray(b_vecs, np.float32))
        metas += b_metas
    matrix = np.concatenate(vecs) if vecs else np.zeros((0, idx.store.dim), np.float32)
    return ids, matrix, metas, idx.encoder_info


def item_files(index_path: str | Path, ids: Sequence[str]) -> list[Path]:
    """The image file of each item id: its stored path, absolute or under the index's dataset root (it may no
    longer exist; callers check)."""
    from visrec.index import Index

    root = Index(index_path, mmap=False).folder.manifest.extra.get("dataset_root")
    all_ids, _, metas, _ = read_index(index_path)
    where = dict(zip(all_ids, (m["path"] for m in metas), strict=True))
    return [Path(where[i]) if Path(where[i]).is_absolute() else Path(root or ".") / where[i] for i in ids]


def load_split(
    index_path: str | Path,
    split_field: str = AUTO,
    train_values: Sequence[str] = ("train", "valid"),
    test_values: Sequence[str] = ("test",),
    val_fraction: float = 0.2,
    seed: int = 0,
) -> EmbeddingSplit:
    """:func:`split_embeddings` of everything stored in the index at ``index_path``."""
    ids, vecs, metas, enc = read_index(index_path)
    return split_embeddings(
        ids, vecs, metas, enc, split_field, train_values, test_values, val_fraction, seed, source=str(index_path)
    )
