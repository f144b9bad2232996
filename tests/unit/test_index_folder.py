"""The on-disk index folder: manifest, atomic generation switch, crash safety, write lock, encoder check."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.unit.crashing import kill_when_paused
from visrec.errors import BadInput, IndexBusy, IndexCorrupt, ManifestMismatch
from visrec.index.folder import IndexFolder, write_json
from visrec.stores import create_store, l2_normalize, load_store

ENCODER = {"name": "fake-8", "fingerprint": "abc123", "describe": {"size": 32}}
SRC = Path(__file__).resolve().parents[2] / "src"


def new_folder(path: Path) -> IndexFolder:
    return IndexFolder.create(path, encoder_info=ENCODER, dim=8, joint_dim=None, backend="exact")


def store_writer(n: int, calibration: dict[str, float] | None = None):  # type: ignore[no-untyped-def]
    """A commit callback saving a store of ``n`` items (and calibration.json)."""
    store = create_store("exact", 8)
    vecs = l2_normalize(np.random.default_rng(n).standard_normal((n, 8)))
    store.add([f"item{i}" for i in range(n)], vecs, [{"path": f"{i}.jpg"} for i in range(n)])

    def write(tmp: Path) -> None:
        (tmp / "store").mkdir()
        store.save(tmp / "store")
        if calibration is not None:
            write_json(tmp, "calibration.json", calibration)

    return write


def entries(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


def test_create_open_and_manifest_round_trip(tmp_path: Path) -> None:
    folder = new_folder(tmp_path / "naruto.vrx")
    m = IndexFolder.open(tmp_path / "naruto.vrx").manifest
    assert m == folder.manifest
    assert (m.format, m.schema_version, m.dim, m.joint_dim, m.store, m.normalization) == (
        "visrec-index", 2, 8, None, "exact", "l2"
    )  # fmt: skip
    assert m.encoder == ENCODER and m.generation == 0 and m.count == 0 and m.created.endswith("+00:00")
    raw = json.loads((tmp_path / "naruto.vrx" / "manifest.json").read_text())
    assert list(raw)[:2] == ["format", "schema_version"] and raw["encoder"]["fingerprint"] == "abc123"
    assert folder.generation_dir is None and folder.read_json("calibration.json") is None


def test_create_refuses_non_index_folders_and_open_refuses_non_indexes(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(BadInput, match="not empty and not a visrec index"):
        new_folder(tmp_path / "photos")
    with pytest.raises(BadInput, match="not a visrec index"):
        IndexFolder.open(tmp_path / "photos")
    with pytest.raises(BadInput, match="does not exist"):
        IndexFolder.open(tmp_path / "nothing")
    new_folder(tmp_path / "idx")
    with pytest.raises(BadInput, match="already a visrec index"):
        new_folder(tmp_path / "idx")


def test_commit_switches_generation_and_cleans_the_old_one(tmp_path: Path) -> None:
    folder = new_folder(tmp_path / "idx")
    first = folder.commit(store_writer(3, {"t": 0.5}), count=3, extra={"source": "a", "note": "x"})
    assert first.name == "gen-000001" and folder.manifest.count == 3
    second = folder.commit(store_writer(5), count=5, extra={"note": None})
    assert second.name == "gen-000002" and not first.exists()
    reopened = IndexFolder.open(tmp_path / "idx")
    assert reopened.manifest.generation == 2 and reopened.manifest.extra == {"source": "a"}
    assert reopened.generation_dir == second
    assert load_store("exact", second / "store").count() == 5
    assert reopened.read_json("calibration.json") is None
    assert entries(tmp_path / "idx") == {"manifest.json", ".lock", "gen-000002"}


def test_carry_over_keeps_unchanged_files(tmp_path: Path) -> None:
    folder = new_folder(tmp_path / "idx")
    folder.commit(store_writer(3, {"t": 0.5}), count=3)

    def recalibrate(tmp: Path) -> None:
        kept = folder.carry_over(tmp, ["store", "calibration.json", "absent.json"])
        assert kept == ["store", "calibration.json"]
        write_json(tmp, "calibration.json.new", {"t": 0.7})

    gen = folder.commit(recalibrate, count=3)
    assert load_store("exact", gen / "store").ids() == ["item0", "item1", "item2"]
    assert folder.read_json("calibration.json") == {"t": 0.5}
    with pytest.raises(BadInput, match="plain file name"):
        folder.read_json("../manifest.json")


def test_exception_inside_write_leaves_the_old_generation_current(tmp_path: Path) -> None:
    folder = new_folder(tmp_path / "idx")
    folder.commit(store_writer(3, {"t": 0.5}), count=3)

    def broken(tmp: Path) -> None:
        store_writer(9)(tmp)
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="encoder crashed"):
        folder.commit(broken, count=9)
    reopened = IndexFolder.open(tmp_path / "idx")
    assert reopened.manifest.generation == 1 and reopened.manifest.count == 3
    assert load_store("exact", reopened.generation_dir / "store").count() == 3  # type: ignore[operator]
    assert reopened.read_json("calibration.json") == {"t": 0.5}
    assert entries(tmp_path / "idx") == {"manifest.json", ".lock", "gen-000001"}


CRASHING_WRITER = """
import os, sys, time
from pathlib import Path
import numpy as np
import visrec.index.folder as F
from visrec.index.folder import IndexFolder
from visrec.stores import create_store, l2_normalize

path, point = Path(sys.argv[1]), sys.argv[2]

def pause():
    (path / "PAUSED").write_text(point)
    time.sleep(120)

if point == "after-rename":
    real_write = F.write_json_atomic
    F.write_json_atomic = lambda p, o: (pause(), real_write(p, o))
elif point == "before-manifest-replace":
    real_replace = os.replace
    os.replace = lambda a, b: (pause(), real_replace(a, b))
elif point == "before-cleanup":
    calls, real_cleanup = [], F.IndexFolder.cleanup
    def cleanup(self):
        calls.append(1)
        if len(calls) == 2:  # the first call is on taking the lock
            pause()
        return real_cleanup(self)
    F.IndexFolder.cleanup = cleanup

store = create_store("exact", 8)
store.add(["only"], l2_normalize(np.ones((1, 8))), [{}])

def write(tmp):
    (tmp / "store").mkdir()
    store.save(tmp / "store")
    if point == "mid-write":
        pause()
    (tmp / "calibration.json").write_text("{}")

IndexFolder.open(path).commit(write, count=1)
"""


@pytest.mark.parametrize(
    ("point", "survivor"),
    [("mid-write", 1), ("after-rename", 1), ("before-manifest-replace", 1), ("before-cleanup", 2)],
)
def test_sigkill_during_commit_leaves_a_readable_index(tmp_path: Path, point: str, survivor: int) -> None:
    path = tmp_path / "idx"
    folder = new_folder(path)
    folder.commit(store_writer(3, {"t": 0.5}), count=3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    kill_when_paused([sys.executable, "-c", CRASHING_WRITER, str(path), point], env, path, timeout=60)

    reader = IndexFolder.open(path)  # leftovers are ignored
    assert reader.manifest.generation == survivor
    assert load_store("exact", reader.generation_dir / "store").count() == (3 if survivor == 1 else 1)  # type: ignore[operator]
    assert entries(path) - {"PAUSED"} != {"manifest.json", ".lock", f"gen-{survivor:06d}"}  # debris is there

    new = reader.commit(store_writer(4), count=4)  # the dead writer's lock is gone
    assert load_store("exact", new / "store").count() == 4
    assert entries(path) == {"manifest.json", ".lock", "PAUSED", new.name}


def test_second_writer_gets_index_busy(tmp_path: Path) -> None:
    folder = new_folder(tmp_path / "idx")
    other = IndexFolder.open(tmp_path / "idx")
    with folder.writer():
        folder.commit(store_writer(2), count=2)  # re-entrant for the holder
        with pytest.raises(IndexBusy, match=str(tmp_path / "idx")):
            other.commit(store_writer(3), count=3)
        with pytest.raises(IndexBusy, match="another process is writing"), other.writer(timeout=0.05):
            pass
    with other.writer():
        assert other.manifest.generation == 1  # re-read on taking the lock
        other.commit(store_writer(3), count=3)
    assert IndexFolder.open(tmp_path / "idx").manifest.count == 3


def test_encoder_mismatch_names_both_encoders_and_the_fix(tmp_path: Path) -> None:
    folder = new_folder(tmp_path / "idx")
    folder.check_encoder("abc123", "fake-8")
    with pytest.raises(ManifestMismatch) as e:
        folder.check_encoder("fff999", "clip-b32")
    msg = str(e.value)
    assert "fake-8" in msg and "clip-b32" in msg and "holds no image yet" in msg and "--encoder fake-8" in msg
    folder.commit(store_writer(2), count=2)
    with pytest.raises(ManifestMismatch, match=r"into a new folder \(--out NEW.vrx\)"):
        folder.check_encoder("fff999", "clip-b32")
    with pytest.raises(ManifestMismatch, match="weights or preprocessing changed"):
        folder.check_encoder("fff999", "fake-8")


def test_damaged_folders_raise_index_corrupt_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    folder = new_folder(path)
    gen = folder.commit(store_writer(2), count=2)
    (gen / "store" / "vectors.npy").unlink()
    with pytest.raises(IndexCorrupt, match=r"missing vectors.npy.*re-index"):
        load_store("exact", gen / "store")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "generation": 7}))
    with pytest.raises(IndexCorrupt, match="gen-000007, which is missing"):
        IndexFolder.open(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorrupt, match="cannot be read"):
        IndexFolder.open(path)
    (path / "manifest.json").unlink()
    with pytest.raises(IndexCorrupt, match=r"no manifest\.json"):
        IndexFolder.open(path)
    (path / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ManifestMismatch, match="upgrade visrec"):
        IndexFolder.open(path)


def test_work_dir_persists_until_cleared(tmp_path: Path) -> None:
    folder = new_folder(tmp_path / "idx")
    (folder.work_dir / "shard-000001.npy").write_bytes(b"partial")
    folder.commit(store_writer(1), count=1)
    again = IndexFolder.open(tmp_path / "idx")
    assert (again.work_dir / "shard-000001.npy").read_bytes() == b"partial"
    again.clear_work()
    assert not (tmp_path / "idx" / "work").exists()
