"""The helper process that stats a dataset folder's files during an update: same facts as ``os.stat``, used by
the scan, and any failure of it only means the scan stats the files itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import visrec.prefetch as prefetch
from tests.fixtures_images import make_labeled_tree
from visrec import ops
from visrec.index.pipeline import IndexConfig
from visrec.prefetch import FactsPrefetch, start_prefetch
from visrec.stores._facts import as_int64


def _tree(root: Path) -> None:
    make_labeled_tree(root, ("amber", "blue"), per_class=3, size=16)
    (root / "amber" / "deeper").mkdir()
    (root / "amber" / "deeper" / "x 1.png").write_bytes((root / "amber" / "amber_0.jpg").read_bytes())
    (root / ".hidden").mkdir()
    (root / ".hidden" / "h.jpg").write_bytes(b"h")
    (root / "amber" / ".ds.jpg").write_bytes(b"h")
    (root / "notes.txt").write_text("not an image")


def test_the_helper_reports_what_stat_reports(tmp_path: Path) -> None:
    _tree(tmp_path)
    elsewhere = tmp_path.parent / (tmp_path.name + "_linked")
    elsewhere.mkdir()
    (elsewhere / "y.jpg").write_bytes(b"y")
    os.symlink(elsewhere, tmp_path / "blue" / "link")  # a symlinked folder is not entered (as os.walk does)
    facts = FactsPrefetch(tmp_path).result()
    assert facts is not None and facts.root == str(tmp_path)
    expected = sorted(
        str(p.relative_to(tmp_path).as_posix()) for p in tmp_path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(tmp_path).parts)
        and "link" not in p.parts
    )  # fmt: skip
    assert sorted(facts.paths) == expected
    for rel, k in facts.position.items():
        st = os.stat(tmp_path / rel)
        assert (facts.size[k], facts.mtime_ns[k], facts.inode[k]) == (st.st_size, st.st_mtime_ns, as_int64(st.st_ino))


def test_a_failed_helper_gives_nothing_and_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = FactsPrefetch(tmp_path / "missing").result()
    assert missing is not None and missing.paths == [] and missing.size.shape == (0,)
    monkeypatch.setattr(prefetch, "_CHILD", "import sys; sys.stdout.buffer.write(b'garbage'); sys.exit(0)")
    assert FactsPrefetch(tmp_path).result() is None
    monkeypatch.setattr(prefetch, "_CHILD", "import sys; sys.exit(3)")
    assert FactsPrefetch(tmp_path).result() is None
    monkeypatch.setattr(prefetch, "_CHILD", "import time; time.sleep(60)")
    slow = FactsPrefetch(tmp_path)
    assert slow.result(timeout=0.5) is None  # killed, not left running
    assert slow._proc is None


def test_it_starts_only_for_an_existing_large_index_of_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path / "data")
    out = tmp_path / "idx.vrx"
    assert start_prefetch(tmp_path / "data", out) is None  # no index yet: a first build compares nothing
    ops.index(tmp_path / "data", out, encoder="fake", config=IndexConfig(calibrate=False))
    assert start_prefetch(tmp_path / "data", out) is None  # 7 items, below MIN_ITEMS
    monkeypatch.setattr(prefetch, "MIN_ITEMS", 1)
    started = start_prefetch(tmp_path / "data", out)
    assert started is not None
    started.close()
    assert start_prefetch(tmp_path / "data" / "notes.txt", out) is None


@pytest.mark.parametrize("broken", [False, True])
def test_an_update_with_the_helper_finds_the_same_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: bool
) -> None:
    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    _tree(root)
    cfg = IndexConfig(calibrate=False)
    assert ops.index(root, out, encoder="fake", config=cfg).added == 7
    monkeypatch.setattr(prefetch, "MIN_ITEMS", 1)
    if broken:
        monkeypatch.setattr(prefetch, "_CHILD", "import sys; sys.exit(1)")
    used: list[object] = []
    real = FactsPrefetch.result

    def spy(self: FactsPrefetch, timeout: float = 300.0) -> prefetch.FileFacts | None:
        used.append(res := real(self, timeout))
        return res

    monkeypatch.setattr(FactsPrefetch, "result", spy)
    touched = root / "blue" / "blue_1.jpg"
    touched.write_bytes(touched.read_bytes() + b"\0")  # new content, same name
    (root / "amber" / "amber_2.jpg").unlink()
    (root / "amber" / "new.jpg").write_bytes((root / "blue" / "blue_0.jpg").read_bytes())
    rep = ops.index(root, out, encoder="fake", config=cfg)
    assert (rep.added, rep.updated, rep.removed, rep.unchanged) == (1, 1, 1, 5)
    assert len(used) == 1 and (used[0] is None) == broken
    assert ops.index(root, out, encoder="fake", config=cfg).unchanged == 7
