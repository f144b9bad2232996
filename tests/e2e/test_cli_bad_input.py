"""Bad input met through the CLI: a typed one-line error that names the file and the fix, and the stored index
still opens and answers as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.e2e.cli_run import run
from tests.fixtures_images import make_labeled_tree, make_text_as_jpg
from visrec.cli import app
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import ManifestMismatch
from visrec.index.writer import build_index

CLASSES = ("amber", "blue", "crimson")


def _copy(index: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy.vrx"
    shutil.copytree(index, dest)
    return dest


def _cut_in_half(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


@pytest.mark.parametrize("name", ["linear.npz", "novelty.npz"])
def test_a_truncated_npz_names_the_file_and_calibrate_rewrites_it(
    name: str, index: Path, data: Path, tmp_path: Path
) -> None:
    idx = _copy(index, tmp_path)
    query = str(data / "blue" / "blue_0.jpg")
    code, before, _ = run("classify", str(idx), query, "--json")
    assert code == 0
    damaged = next(idx.glob(f"gen-*/{name}"))
    _cut_in_half(damaged)
    code, _, err = run("classify", str(idx), query)
    assert code == 3 and str(damaged) in err and f"visrec calibrate {idx}" in err
    assert "Traceback" not in err and "BadZipFile" not in err
    code, _, err = run("calibrate", str(idx))
    assert code == 0, err
    code, after, _ = run("classify", str(idx), query, "--json")
    assert code == 0 and '"label": "blue"' in after and '"label": "blue"' in before


def test_a_damaged_calibration_names_commands_that_restore_it(index: Path, data: Path, tmp_path: Path) -> None:
    idx = _copy(index, tmp_path)
    damaged = next(idx.glob("gen-*/calibration.json"))
    _cut_in_half(damaged)
    code, _, err = run("classify", str(idx), str(data / "blue" / "blue_0.jpg"))
    assert code == 3 and f"rm '{damaged}'" in err and f"visrec calibrate '{idx}'" in err
    damaged.unlink()  # what the message says to do
    code, _, err = run("calibrate", str(idx))
    assert code == 0, err
    code, out, _ = run("classify", str(idx), str(data / "blue" / "blue_0.jpg"), "--json")
    assert code == 0 and '"label": "blue"' in out and '"threshold": 0.95' in out  # calibrated again


def test_an_unknown_store_leaves_no_folder_behind(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "new.vrx"
    code, _, err = run("index", str(data), "--out", str(out), "--encoder", "fake", "--store", "bogus")
    assert code == 2 and "unknown store 'bogus'" in err and "exact, faiss" in err
    assert not out.exists()
    code, _, err = run("index", str(data), "--out", str(out), "--encoder", "fake", "--store", "exact", "--no-calibrate")
    assert code == 0, err  # the corrected command works: no folder holds the wrong name


def test_csv_rows_whose_file_is_missing_are_reported_as_skipped(data: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "list.csv"
    rows = [f"{data / c / f'{c}_{i}.jpg'},{c}" for c in CLASSES for i in range(3)]
    manifest.write_text("path,label\n" + "\n".join([*rows, f"{tmp_path / 'gone.jpg'},blue"]) + "\n")
    code, out, err = run("index", str(manifest), "--out", str(tmp_path / "m.vrx"), "--encoder", "fake", "--json")
    assert code == 0, err
    assert '"missing": [' in out and str(tmp_path / "gone.jpg") in out and '"n_skipped": 1' in out


def test_calibrating_too_few_classes_names_the_index_and_the_way_out(data: Path, tmp_path: Path) -> None:
    two = tmp_path / "two"
    for c in CLASSES[:2]:
        shutil.copytree(data / c, two / c)
    idx = tmp_path / "two.vrx"
    assert run("index", str(two), "--out", str(idx), "--encoder", "fake", "--no-calibrate")[0] == 0
    code, _, err = run("calibrate", str(idx))
    assert code == 2 and str(idx) in err and "2 class(es)" in err and f"visrec calibrate {idx} HELD_OUT" in err
    code, _, err = run("calibrate", str(idx), str(two))
    assert code == 0, err  # the way out the message gives works


def test_eval_with_no_test_image_of_the_indexed_classes_says_so(index: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_labeled_tree(other, ("dune", "ember", "fern"), per_class=6, size=40)
    code, _, err = run("eval", str(index), "--data", str(other), "--out", str(tmp_path / "ev"))
    assert code == 2 and str(other) in err and "amber, blue, crimson" in err and "dune, ember, fern" in err
    assert "none of the 0 images" not in err


def test_an_index_left_empty_by_a_failed_run_says_nothing_is_lost_by_starting_over(
    index: Path, data: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken" / "amber"
    broken.mkdir(parents=True)
    make_text_as_jpg(broken / "a.jpg")
    out = tmp_path / "first.vrx"
    code, _, err = run("index", str(broken.parent), "--out", str(out), "--encoder", "fake")
    assert code == 2 and "none of the 1 images could be indexed" in err
    other = create_encoder("fake", dim=32)
    with pytest.raises(ManifestMismatch, match=f"It holds no image yet: delete {out} and index again"):
        build_index(load_dataset(data), out, other)
    with pytest.raises(ManifestMismatch, match=r"into a new folder \(--out NEW.vrx\)"):
        build_index(load_dataset(data), _copy(index, tmp_path), other)
    code, _, err = run("index", str(data), "--out", str(out), "--encoder", "fake", "--no-calibrate")
    assert code == 0, err  # the encoder that made the folder fills it


def test_a_negative_row_count_is_refused(index: Path, data: Path) -> None:
    code, _, err = run("classify", str(index), str(data / "blue" / "blue_0.jpg"), "--show", "-1")
    assert code == 2 and "--show" in err


def test_a_roboflow_csv_without_class_columns_or_with_label_names_says_what_to_give(data: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(data / "blue" / "blue_0.jpg", export / "a.jpg")
    (export / "_classes.csv").write_text("filename\na.jpg\n")
    code, _, err = run("index", str(export), "--out", str(tmp_path / "r.vrx"), "--encoder", "fake")
    assert code == 2 and str(export / "_classes.csv") in err and "no class columns" in err
    assert "--format unlabeled" in err and not (tmp_path / "r.vrx").exists()
    (export / "_classes.csv").write_text("name,label\na.jpg,blue\n")
    code, _, err = run("index", str(export), "--out", str(tmp_path / "r.vrx"), "--encoder", "fake")
    assert code == 2 and "line 2: column 'label' holds 'blue'" in err and "--format manifest" in err


@pytest.mark.parametrize("faces", [False, True])
def test_clustering_a_folder_lists_broken_images_and_clusters_the_rest(faces: bool, data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(data / "blue", folder / "blue")
    make_text_as_jpg(folder / "notes.jpg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "moved.jpg").symlink_to(tmp_path / "gone.jpg")
    out = tmp_path / "clusters.json"
    args = ["faces", "cluster", str(folder)] if faces else ["cluster", str(folder), "--encoder", "fake"]
    code, printed, err = run(*args, "--out", str(out))
    if faces:  # no face in colour noise: the message still counts the unreadable files
        assert code == 2 and "no face found in any image (3 unreadable: 1 empty, 1 missing, 1 not-an-image)" in err
        return
    assert code == 0, err
    assert f'"{folder / "notes.jpg"}": "not-an-image"' in printed and f'"{folder / "empty.png"}": "empty"' in printed
    saved = json.loads(out.read_text())
    assert sum(len(items) for items in saved["clusters"].values()) == 6  # every readable photo is clustered
    assert saved["info"]["unreadable"] == {
        str(folder / "notes.jpg"): "not-an-image",
        str(folder / "empty.png"): "empty",
        str(folder / "moved.jpg"): "missing",
    }


def test_damaged_class_means_are_recomputed_and_calibrate_rewrites_them(
    index: Path, data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    idx = _copy(index, tmp_path)
    query = str(data / "crimson" / "crimson_1.jpg")
    damaged = next(idx.glob("gen-*/prototypes.npy"))
    _cut_in_half(damaged)
    code, out, err = run("classify", str(idx), query, "--mode", "prototype", "--json")
    assert code == 0, err
    assert '"label": "crimson"' in out  # the answer the intact file gave
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(damaged) in warned and f"visrec calibrate {idx}" in warned
    assert run("calibrate", str(idx))[0] == 0
    caplog.clear()
    code, out, _ = run("classify", str(idx), query, "--mode", "prototype", "--json")
    assert code == 0 and '"label": "crimson"' in out
    assert not [r for r in caplog.records if "prototypes.npy" in r.getMessage()]  # rewritten by the calibration


def test_an_update_after_the_running_class_sums_were_damaged_recomputes_them(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(data, folder)
    idx = tmp_path / "u.vrx"
    assert run("index", str(folder), "--out", str(idx), "--encoder", "fake", "--no-calibrate")[0] == 0
    _cut_in_half(next(idx.glob("gen-*/prototype_sums.npy")))
    shutil.copy(folder / "amber" / "amber_0.jpg", folder / "amber" / "extra.jpg")
    code, _, err = run("index", str(folder), "--out", str(idx), "--encoder", "fake", "--no-calibrate")
    assert code == 0, err
    code, out, err = run("classify", str(idx), str(data / "amber" / "amber_2.jpg"), "--mode", "prototype", "--json")
    assert code == 0 and '"label": "amber"' in out, err


def test_an_update_of_an_index_with_damaged_vectors_says_to_use_a_new_folder(
    index: Path, data: Path, tmp_path: Path
) -> None:
    idx = _copy(index, tmp_path)
    damaged = next(idx.glob("gen-*/store/seg-*/vectors.npy"))
    _cut_in_half(damaged)
    code, _, err = run("search", str(idx), "--image", str(data / "blue" / "blue_0.jpg"))
    fix = "re-index the images into a new folder (visrec index SOURCE --out NEW.vrx)"
    assert code == 3 and str(damaged) in err and fix in err  # reading it names the same fix
    before = sorted(p.name for p in idx.rglob("*"))
    code, _, err = run("index", str(data), "--out", str(idx), "--encoder", "fake")
    assert code == 3 and str(damaged) in err and fix in err and "An update cannot repair it" in err
    assert sorted(p.name for p in idx.rglob("*")) == before  # the failed update wrote nothing
    code, _, err = run("index", str(data), "--out", str(tmp_path / "new.vrx"), "--encoder", "fake", "--no-calibrate")
    assert code == 0, err


def test_an_unreadable_query_among_several_is_listed_and_the_others_are_answered(
    index: Path, data: Path, tmp_path: Path
) -> None:
    broken = make_text_as_jpg(tmp_path / "notes.jpg")
    good = data / "blue" / "blue_0.jpg"
    res = CliRunner().invoke(app, ["search", str(index), "-i", str(broken), "-i", str(good), "-k", "1", "--json"])
    assert res.exit_code == 0, res.stderr
    first, second = json.loads(res.stdout)
    assert first == {"query": str(broken), "hits": [], "skipped": "not-an-image"}
    assert second["query"] == str(good) and second["hits"][0]["labels"] == ["blue"]
    code, _, err = run("search", str(index), "-i", str(broken))
    assert code == 2 and str(broken) in err and "not-an-image" in err  # alone, it is an error as before
