"""Dataset readers: the records, labels, splits and classes a user gets from each layout."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures_images import make_bad_images, make_labeled_tree, make_roboflow_export, noise_image
from tests.shared_data import SHARED_DATA
from visrec.data import (
    describe_files,
    detect_format,
    load_dataset,
    read_dataset,
    write_manifest,
)
from visrec.errors import BadInput, EmptyDataset
from visrec.types import ImageRecord, LabeledSet

SHARED = SHARED_DATA


def _save(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise_image(16, seed=seed)).save(path)
    return path


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is not present")
    return path


# ------------------------------------------------------------------------------------------ folders


def test_folder_tree_labels_ids_and_natural_class_order(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path, classes=("class10", "class2", "class1"), per_class=2, size=8)
    _save(tmp_path / "class2" / "deeper" / "more" / "x.png")
    (tmp_path / "class1" / "notes.txt").write_text("not an image")
    _save(tmp_path / "class1" / ".hidden.jpg")
    _save(tmp_path / ".git" / "objects" / "y.jpg")
    _save(tmp_path / "__MACOSX" / "class1" / "._a.jpg")
    ds = load_dataset(tmp_path)
    assert ds.classes == ("class1", "class2", "class10")
    assert ds.source == "folder" and len(ds) == 7
    deep = next(r for r in ds if r.id == "class2/deeper/more/x.png")
    assert deep.labels == ("class2",) and deep.path == deep.id
    assert all(r.split is None for r in ds)
    assert all("/" in r.id and "\\" not in r.id for r in ds)
    assert [r.id for r in load_dataset(tmp_path)] == [r.id for r in ds]  # stable order


def test_folder_images_in_root_are_reported_not_labeled(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path, classes=("a", "b"), per_class=1, size=8)
    _save(tmp_path / "stray.jpg")
    ds, report = read_dataset(tmp_path, "folders")
    assert "stray.jpg" not in {r.id for r in ds}
    assert report.counts() == {"outside-label-folder": 1}
    assert report.to_dict()["skipped"][0]["path"] == "stray.jpg"


def test_undecodable_image_files_are_listed_as_skipped_not_ignored(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path, classes=("a", "b"), per_class=1, size=8)
    (tmp_path / "a" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    ds, report = read_dataset(tmp_path, "folders")
    assert len(ds) == 2 and report.counts() == {"unsupported-format": 1} and report.ignored == 1
    entry = report.to_dict()["skipped"][0]
    assert entry["path"] == "a/IMG_0001.HEIC" and "convert it to JPEG" in entry["detail"]


def test_split_folders_with_label_folders_set_split(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path / "train", classes=("cat", "dog"), per_class=2, size=8)
    make_labeled_tree(tmp_path / "test", classes=("cat", "dog"), per_class=1, size=8)
    ds = load_dataset(tmp_path)
    assert ds.classes == ("cat", "dog")
    assert {r.split for r in ds} == {"train", "test"}
    assert next(r for r in ds if r.id == "test/dog/dog_0.jpg").labels == ("dog",)


def test_unlabeled_reads_every_image_without_labels(tmp_path: Path) -> None:
    _save(tmp_path / "a.jpg")
    _save(tmp_path / "sub" / "b.png", 1)
    (tmp_path / "readme.md").write_text("x")
    assert detect_format(tmp_path / "sub") == "unlabeled"
    ds, report = read_dataset(tmp_path, "unlabeled")
    assert [r.id for r in ds] == ["a.jpg", "sub/b.png"]
    assert ds.classes == () and all(r.labels == () for r in ds)
    assert report.ignored == 1


def test_empty_folder_error_names_folder_and_layout(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(EmptyDataset) as info:
        load_dataset(tmp_path)
    assert str(tmp_path) in str(info.value) and "<label>" in str(info.value)
    with pytest.raises(EmptyDataset, match="<label>"):
        load_dataset(tmp_path, format="folders")
    with pytest.raises(EmptyDataset, match=re.escape(str(tmp_path))):
        load_dataset(tmp_path, format="unlabeled")


def test_missing_path_and_unknown_format_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        load_dataset(tmp_path / "nope")
    _save(tmp_path / "a.jpg")
    with pytest.raises(BadInput, match="folders"):
        load_dataset(tmp_path, format="coco-ish")
    with pytest.raises(BadInput, match="csv"):
        load_dataset(tmp_path / "a.jpg")


# ----------------------------------------------------------------------------------------- Roboflow


def test_roboflow_export(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    facts = make_roboflow_export(tmp_path, classes=("Gara", "Naruto", "Sakura"), per_class=2)
    assert detect_format(tmp_path) == "roboflow"
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(tmp_path)
    assert "left out" in caplog.text
    ds, report = read_dataset(tmp_path)
    assert ds.source == "roboflow"
    assert ds.classes == ("Gara", "Naruto", "Sakura")  # stripped, "Unlabeled" is not a class
    by_id = {r.id: r for r in ds}
    assert by_id["train/multi.jpg"].labels == ("Gara", "Naruto")
    for unlabeled in facts["unlabeled"]:  # type: ignore[attr-defined]
        assert by_id[unlabeled].labels == ()
    assert by_id["valid/sakura_1_jpg.rf.121.jpg"].labels == ("Sakura",)
    counts = {s: sum(r.split == s for r in ds) for s in ("train", "valid", "test")}
    assert counts == facts["counts"]
    assert facts["missing"] not in by_id
    assert [(s.path, s.reason) for s in report.skipped] == [(facts["missing"], "missing")]


def test_roboflow_single_split_folder(tmp_path: Path) -> None:
    make_roboflow_export(tmp_path, per_class=1)
    ds = load_dataset(tmp_path / "valid")
    assert len(ds) == 3 and {r.split for r in ds} == {None}


def test_roboflow_rejects_non_binary_cells(tmp_path: Path) -> None:
    _save(tmp_path / "train" / "a.jpg")
    (tmp_path / "train" / "_classes.csv").write_text("filename, cat\na.jpg,yes\n")
    with pytest.raises(BadInput, match="0 or 1"):
        load_dataset(tmp_path)


# ----------------------------------------------------------------------------------------- manifest


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as fh:  # with a BOM, as Excel writes
        csv.writer(fh).writerows(rows)
    return path


def test_manifest_columns_groups_extra_and_missing_rows(tmp_path: Path) -> None:
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg", "d.jpg")):
        _save(tmp_path / "img" / name, i)
    _write_csv(
        tmp_path / "manifest.csv",
        [
            ["path", "labels", "split", "dup_group", "grouped_split", "note"],
            ["img/a.jpg", "cat", "train", "7", "train", "x"],
            ["img\\b.jpg", "cat|dog", "test", "7", "train", ""],
            ["./img/c.jpg", "", "", "", "test", ""],
            ["img/gone.jpg", "dog", "train", "", "", ""],
            ["img/d.jpg", "dog", "valid", "9", "test", ""],
        ],
    )
    assert detect_format(tmp_path) == "manifest"
    ds, report = read_dataset(tmp_path)
    assert ds.source == "manifest" and ds.classes == ("cat", "dog")
    by_id = {r.id: r for r in ds}
    assert list(by_id) == ["img/a.jpg", "img/b.jpg", "img/c.jpg", "img/d.jpg"]
    assert by_id["img/b.jpg"].labels == ("cat", "dog") and by_id["img/b.jpg"].group == "7"
    assert by_id["img/c.jpg"].labels == () and by_id["img/c.jpg"].split is None
    assert by_id["img/a.jpg"].extra == {"grouped_split": "train", "note": "x"}
    assert by_id["img/d.jpg"].field("grouped_split") == "test"
    assert report.counts() == {"missing": 1}


def test_manifest_without_label_column_says_which_columns_it_needs(tmp_path: Path) -> None:
    _save(tmp_path / "a.jpg")
    _write_csv(tmp_path / "list.csv", [["path", "lable"], ["a.jpg", "cat"]])
    with pytest.raises(BadInput, match="'label'"):
        load_dataset(tmp_path / "list.csv")


def test_manifest_listing_only_missing_files_is_empty(tmp_path: Path) -> None:
    _write_csv(tmp_path / "manifest.csv", [["path", "label"], ["x.jpg", "cat"]])
    with pytest.raises(EmptyDataset, match=r"manifest\.csv"):
        load_dataset(tmp_path)


def _rich_dataset(root: Path) -> LabeledSet:
    make_labeled_tree(root, classes=("cat", "dog"), per_class=2, size=8)
    recs = [
        ImageRecord("cat/cat_0.jpg", "cat/cat_0.jpg", ("cat",), "train", group="1", extra={"src": "web"}),
        ImageRecord("cat/cat_1.jpg", "cat/cat_1.jpg", ("cat", "dog"), "test", extra={"q": 'a,b "c"'}),
        ImageRecord("dog/dog_0.jpg", "dog/dog_0.jpg", (), None, sha256="ab", width=8, height=8),
        ImageRecord("my-id", "dog/dog_1.jpg", ("dog",), "valid"),
    ]
    return LabeledSet(root, tuple(recs), ("cat", "dog"), "manifest")


def test_write_manifest_round_trips(tmp_path: Path) -> None:
    ds = _rich_dataset(tmp_path / "data")
    out = write_manifest(ds, tmp_path / "data" / "manifest.csv")
    back = load_dataset(out)
    assert back.records == ds.records and back.classes == ds.classes
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert header == "id,path,labels,split,group,sha256,width,height,src,q"


def test_write_manifest_elsewhere_keeps_ids_and_finds_files(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path / "data", classes=("cat", "dog"), per_class=2, size=8)
    ds = load_dataset(tmp_path / "data")
    out = write_manifest(ds, tmp_path / "lists" / "all.csv")
    back, report = read_dataset(out)
    assert [r.id for r in back] == [r.id for r in ds] and not report.skipped
    assert all(r.path.startswith("../data/") for r in back)
    assert all(back.abspath(r).is_file() for r in back)
    header = out.read_text().splitlines()[0]
    assert header.startswith("id,path,label,split")  # single-label -> "label"


def test_describe_files_fills_facts_and_returns_bad_files(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path, classes=("cat", "dog"), per_class=2, size=12)
    bad = make_bad_images(tmp_path / "cat" / "bad")
    ds = load_dataset(tmp_path)
    assert len(ds) == 4 + len(bad)
    good, errors = describe_files(ds, workers=2)
    assert len(good) == 4 and all(r.width == 12 and r.height == 12 and len(r.sha256) == 64 for r in good)
    assert sorted(e.reason for e in errors) == sorted(bad)
    assert [r.id for r in good] == [r.id for r in ds if not r.id.startswith("cat/bad/")]
    with pytest.raises(BadInput, match="workers"):
        describe_files(ds, workers=0)


# -------------------------------------------------------------------------------------- real data


def test_real_naruto_manifest() -> None:
    root = _shared("naruto_roboflow")
    ds, report = read_dataset(root)
    assert ds.source == "manifest" and len(ds) == 391 and not report.skipped
    assert ds.classes == ("Gara", "Naruto", "Sakura", "Tsunade")
    splits = {s: sum(r.split == s for r in ds) for s in ("train", "valid", "test")}
    assert splits == {"train": 297, "valid": 64, "test": 30}
    assert sum(r.field("grouped_split") == "test" for r in ds) == 85
    assert len({r.group for r in ds}) == 179


def test_real_cifar_manifest_and_folder_view_agree() -> None:
    root = _shared("cifar10_subset")
    ds = load_dataset(root)
    assert len(ds) == 3000 and len(ds.classes) == 10
    assert sum(r.split == "test" for r in ds) == 1000
    folders = load_dataset(root / "images")
    assert folders.classes == ds.classes and len(folders) == 3000


def test_index_run_summary_counts_undecodable_image_files(tmp_path: Path) -> None:
    from visrec import ops

    make_labeled_tree(tmp_path / "d", classes=("a", "b"), per_class=2, size=16)
    (tmp_path / "d" / "a" / "beach.heic").write_bytes(b"\0\0\0\x18ftypheic")
    report = ops.index(tmp_path / "d", tmp_path / "idx.vrx", encoder="fake")
    assert report.count == 4 and report.n_skipped == 1
    assert report.skipped == {"unsupported-format": [str(tmp_path / "d" / "a" / "beach.heic")]}


def test_listing_order_is_natural_within_folders_and_folders_before_subfolders(tmp_path: Path) -> None:
    from natsort import natsorted

    names = ["img10.png", "img2.png", "img1.png", "a.png", "A1.png", "b10x2.png", "b10x10.png", "b9.png", "img02.png"]
    uniform = [f"frame{i:05d}.jpg" for i in (3, 120, 7, 45)]
    for folder, files in (("cls10", names), ("cls2", uniform), ("cls2/sub", ["z1.png"])):
        (tmp_path / folder).mkdir(parents=True)
        for n in files:
            (tmp_path / folder / n).write_bytes(b"x")
    ds = load_dataset(tmp_path)
    paths = [r.path for r in ds]
    assert paths == [
        *(f"cls2/{n}" for n in sorted(uniform)),  # same digit layout: plain order is the natural order
        "cls2/sub/z1.png",
        *(
            f"cls10/{n}"
            for n in (
                "A1.png",
                "a.png",
                "b9.png",
                "b10x2.png",
                "b10x10.png",
                "img1.png",
                "img02.png",
                "img2.png",
                "img10.png",
            )
        ),  # equal numbers (02, 2) in plain order
    ]
    assert [p for p in paths if p.startswith("cls10/")] == [f"cls10/{n}" for n in natsorted(sorted(names))]
    assert ds.classes == ("cls2", "cls10")
    assert ds.records[0] == ImageRecord(id=paths[0], path=paths[0], labels=("cls2",))


def test_format_detection_stops_at_the_first_labeled_image(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path, ("a", "b"), per_class=2)
    (tmp_path / "loose.jpg").write_bytes((tmp_path / "a" / "a_0.jpg").read_bytes())
    assert detect_format(tmp_path) == "folders"
    only_loose = tmp_path / "flat"
    only_loose.mkdir()
    (only_loose / "x.jpg").write_bytes(b"x")
    assert detect_format(only_loose) == "unlabeled"
