"""What the CLI says when something is wrong: the user's words survive, and the advice leads somewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cli_run import run
from tests.fixtures_images import make_labeled_tree

CLASSES = ("[v2] amber", "blue", "crimson")


def test_square_brackets_in_paths_and_labels_survive(index: Path, data: Path, tmp_path: Path) -> None:
    code, _, err = run("index", str(tmp_path / "data" / "[old]" / "images"), "--out", str(tmp_path / "x.vrx"))
    assert code == 2 and "data/[old]/images" in err
    code, out, _ = run("classify", str(index), str(data / "[v2] amber" / "[v2] amber_0.jpg"))
    assert code == 0 and "[v2] amber" in out  # a label in a table
    code, _, err = run("classify", str(index), str(data), "--where", 'label == "[v3] none"')
    assert code == 2 and 'label == "[v3] none"' in err
    code, _, err = run("search", str(index), "--text", "x", "--where", "label ==")
    assert code == 2 and "[list]" in err  # the filter grammar's own words


def test_a_missing_file_is_named_as_missing(index: Path, tmp_path: Path) -> None:
    code, _, err = run("classify", str(index), str(tmp_path / "frame.jpg"))
    assert code == 2 and "frame.jpg" in err and "does not exist" in err
    assert "[(" not in err and "unreadable" not in err  # no Python repr, no vague reason


def test_an_unknown_filter_field_is_named(index: Path, data: Path) -> None:
    code, _, err = run("classify", str(index), str(data), "--where", 'splt == "test"')
    assert code == 2 and "no image has the field 'splt'" in err and "fields here: " in err
    query = str(data / "blue" / "blue_0.jpg")
    code, _, err = run("search", str(index), "--image", query, "--where", 'splt == "test"')
    assert code == 2 and "no image has the field 'splt'" in err  # the index's filter, too
    code, _, err = run("classify", str(index), query, "--where", 'label == "blue"')
    assert code == 2 and "--where" in err and "dataset" in err  # not silently ignored


def test_an_index_without_labels_gets_advice_that_works(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path / "photos", ("x",), per_class=4, size=40)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (tmp_path / "photos" / "x").iterdir():
        p.rename(flat / p.name)
    code, _, err = run("index", str(flat), "--out", str(tmp_path / "u.vrx"), "--encoder", "fake")
    assert code == 0, err
    code, _, err = run("classify", str(tmp_path / "u.vrx"), str(flat / "x_0.jpg"))
    assert code == 2 and "no labeled image" in err and "visrec search" in err
    assert "visrec calibrate" not in err  # calibrating an unlabeled index fails too


def test_face_commands_never_advise_writing_into_an_image_index(index: Path) -> None:
    import numpy as np

    from visrec.errors import BadInput
    from visrec.faces.gallery import FaceGallery

    with pytest.raises(BadInput) as info:
        FaceGallery.load(index)
    assert "image index" in str(info.value) and f"--out {index.with_suffix('.faces')}" in str(info.value)
    gallery = FaceGallery(np.zeros((0, 128), np.float32), [], {}, None, {})
    with pytest.raises(BadInput, match="folder of its own"):
        gallery.save(index)
    assert not (index / "faces.npy").exists()


NO_TORCH = "import sys\nsys.modules['torch'] = None\nsys.modules['onnxscript'] = None\n"


def run_without_torch(args: list[str], cache: Path) -> tuple[int, str]:
    """The CLI in a child process where torch cannot be imported (the default install): exit code and stderr."""
    env = {**os.environ, "VISREC_CACHE_DIR": str(cache)}
    code = NO_TORCH + "from visrec.cli import app\napp()"
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    return res.returncode, " ".join(res.stderr.split())


def test_without_torch_an_unexported_model_names_the_fix(data: Path, tmp_path: Path) -> None:
    """The default install has no PyTorch: a model missing from the cache is exit 5 with the command that makes
    it, not an ImportError from deep inside the export."""
    code, err = run_without_torch(["index", str(data), "--out", str(tmp_path / "x.vrx")], tmp_path / "empty-cache")
    assert code == 5, err
    assert "bash scripts/install.sh" in err and "visrec prepare-models" in err and "--extras export" in err
    assert "Traceback" not in err and "No module named" not in err


def test_prepare_models_refuses_an_encoder_with_nothing_to_export() -> None:
    code, _, err = run("prepare-models", "fake")
    assert code == 2 and "no exported model to prepare" in err


def test_without_torch_training_names_its_extra(index: Path, data: Path, tmp_path: Path) -> None:
    code, err = run_without_torch(["finetune", str(index), "--out", str(tmp_path / "ft")], tmp_path / "cache")
    assert code == 5 and "visrec finetune needs the package 'torch'" in err and "visrec[train]" in err, err
    assert "Traceback" not in err
    code, err = run_without_torch(["index", str(data), "--out", str(tmp_path / "a.vrx"), "--encoder", "adapted"],
                                  tmp_path / "cache")  # fmt: skip
    assert code == 5 and "The encoder 'adapted' needs the package 'torch'" in err and "Traceback" not in err, err
