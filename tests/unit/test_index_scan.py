"""The scan compares file facts as arrays: unchanged items have no metadata read, a changed description with
the same file is a metadata update, and segments saved without ``facts.npy`` still work and get one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_images import make_labeled_tree
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index.folder import IndexFolder
from visrec.index.pipeline import IndexConfig, IndexingReport
from visrec.index.writer import build_index
from visrec.stores._facts import FACTS, FACTS_DTYPE
from visrec.stores.segmented import SegmentedStore
from visrec.types import LabeledSet


def _build(ds: LabeledSet, out: Path, **cfg: Any) -> IndexingReport:
    return build_index(ds, out, create_encoder("fake"), IndexConfig(calibrate=False, **cfg))


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue"), per_class=6, size=32)
    assert _build(load_dataset(root), out).added == 12
    return root, out


def _stored(out: Path) -> dict[str, dict[str, Any]]:
    folder = IndexFolder.open(out)
    assert folder.generation_dir is not None
    return dict(SegmentedStore.load(folder.generation_dir / "store", folder.manifest.store).metadata_items())


def test_an_update_reads_the_metadata_of_changed_files_only(
    built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = built
    asked: list[list[str]] = []
    real = SegmentedStore.metadata_of

    def spy(self: SegmentedStore, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        asked.append(list(ids))
        return real(self, ids)

    monkeypatch.setattr(SegmentedStore, "metadata_of", spy)
    (root / "amber" / "amber_0.jpg").rename(root / "amber" / "new.jpg")  # one removed, one added
    touched = root / "blue" / "blue_2.jpg"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rep = _build(load_dataset(root), out)
    assert (rep.added, rep.removed, rep.metadata_updated, rep.unchanged) == (1, 1, 1, 10)
    assert asked[0] == ["blue/blue_2.jpg"]
    assert _stored(out)["blue/blue_2.jpg"]["extra"]["mtime_ns"] == str(st.st_mtime_ns + 10**9)


@pytest.mark.parametrize(
    "change",
    [{"labels": ("blue",)}, {"split": "test"}, {"group": "g1"}, {"extra": {"source": "camera 2"}}],
)
def test_a_new_description_of_the_same_file_is_a_metadata_update(
    built: tuple[Path, Path], change: dict[str, Any]
) -> None:
    root, out = built
    ds = load_dataset(root)
    target = "amber/amber_3.jpg"
    ds = ds.subset([replace(r, **change) if r.id == target else r for r in ds])
    rep = _build(ds, out)
    assert (rep.metadata_updated, rep.updated, rep.added, rep.unchanged) == (1, 0, 0, 11)
    meta = _stored(out)[target]
    for key, value in change.items():
        got = meta[key] if key != "extra" else {k: meta["extra"][k] for k in value}
        assert got == (list(value) if key == "labels" else value)
    assert _build(ds, out).unchanged == 12  # and then it is stored as it is


def test_segments_saved_without_valid_facts_are_compared_and_get_them(built: tuple[Path, Path]) -> None:
    root, out = built
    gen = IndexFolder.open(out).generation_dir
    assert gen is not None
    saved = sorted(gen.glob(f"*/seg-*/{FACTS}"))
    assert saved and all(np.load(p).dtype == FACTS_DTYPE for p in saved)
    for p in saved:  # as an earlier visrec wrote them
        p.unlink()
    np.save(saved[0], np.zeros(3))  # or of another format
    (root / "blue" / "blue_0.jpg").unlink()
    rep = _build(load_dataset(root), out)
    assert (rep.removed, rep.unchanged, rep.added) == (1, 11, 0)
    gen = IndexFolder.open(out).generation_dir
    assert gen is not None
    facts = [np.load(p, allow_pickle=False) for p in sorted(gen.glob(f"store/seg-*/{FACTS}"))]
    assert facts and sum(len(f) for f in facts) == 12  # 11 live rows + 1 tombstoned
    assert all(f.dtype == FACTS_DTYPE for f in facts)
    assert _build(load_dataset(root), out).unchanged == 11


def test_a_file_with_a_long_name_does_not_make_the_others_look_changed(
    built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record's description digest depends on that record only (it once depended on the longest text of its
    batch, so one long new name sent every other file through the slow path)."""
    root, out = built
    asked: list[str] = []
    real = SegmentedStore.metadata_of

    def spy(self: SegmentedStore, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        asked.extend(ids)
        return real(self, ids)

    monkeypatch.setattr(SegmentedStore, "metadata_of", spy)
    long_name = root / "amber" / ("a_much_longer_file_name_than_any_other_" * 3 + ".jpg")
    long_name.write_bytes((root / "amber" / "amber_0.jpg").read_bytes() + b"\0")
    rep = _build(load_dataset(root), out)
    assert (rep.added, rep.unchanged) == (1, 12)
    assert asked == []


def test_digests_do_not_depend_on_the_other_texts() -> None:
    from visrec.stores._facts import digests

    alone = digests(["amber/amber_1.jpg\x1famber"])[0]
    assert digests(["amber/amber_1.jpg\x1famber", "x" * 300])[0] == alone
    assert digests(["x" * 300, "amber/amber_1.jpg\x1famber"])[1] == alone
    assert len(set(digests(["ab", "abc", "ab\x00", "ba"]).tolist())) == 4
