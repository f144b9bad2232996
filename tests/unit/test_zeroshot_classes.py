"""Zero-shot classes renamed for their prompts are still scored against the dataset's labels; blend keeps its
image prototypes; the hints and the classify table say what a user needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures_images import class_colour, noise_image
from visrec import ops
from visrec.classify import class_prompts
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index import Index, IndexConfig
from visrec.index.writer import build_index
from visrec.render import short_paths

LABELS = ("Reds", "Greens", "Blues")  # folder names that are not words the text side knows
RENAMED = ["Reds=red", "Greens=green", "Blues=blue"]


def _tree(root: Path, per_class: int, seed: int) -> Path:
    """``root/<label>/<i>.png``: the same file names in every class, as many datasets have."""
    for ci, name in enumerate(LABELS):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = noise_image(40, seed=seed + 100 * ci + i, base=class_colour(ci, len(LABELS)))
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("zs")
    idx = tmp / "idx"
    build_index(load_dataset(_tree(tmp / "train", 6, 0)), idx, create_encoder("fake"), IndexConfig())
    return idx, _tree(tmp / "test", 4, 5000)


def test_renamed_classes_are_scored_against_the_labels(setup: tuple[Path, Path]) -> None:
    idx, test = setup
    res = ops.classify(idx, [test], "zeroshot", classes=RENAMED)
    assert {p.label for p in res.predictions} == set(LABELS)  # answers are labels, the prompts said colours
    assert res.summary is not None and res.summary["n"] == 12 and res.summary["top1"] >= 0.9
    plain = ops.classify(idx, [test], "zeroshot", classes=["red", "green", "blue"])
    assert plain.summary is None  # names that are no label: nothing scored as wrong, and the fix is named
    assert any("--classes 'Label=name" in n for n in plain.notes)


def test_blend_keeps_its_image_prototypes_under_renaming(setup: tuple[Path, Path]) -> None:
    idx, test = setup
    clf = Index(idx).classifier("blend", classes=RENAMED)
    assert sorted(clf.image.classes) == sorted(LABELS) and list(clf.classes) == list(LABELS)
    res = ops.classify(idx, [test], "blend", classes=RENAMED)
    assert res.summary is not None and res.summary["top1"] >= 0.9


def test_class_names_from_text_or_file(tmp_path: Path) -> None:
    assert class_prompts(["Motorbikes=motorbike", "cat"]) == {"Motorbikes": "motorbike", "cat": "cat"}
    f = tmp_path / "classes.txt"
    f.write_text("# label=name\nMotorbikes = motorbike\n\nairplanes=airplane, cat\n")
    assert class_prompts(ops.class_names(str(f))) == {"Motorbikes": "motorbike", "airplanes": "airplane", "cat": "cat"}
    with pytest.raises(BadInput, match="label twice"):
        class_prompts(["cat=a cat", "cat=kitten"])
    with pytest.raises(BadInput, match="'Label=name'"):
        class_prompts(["=motorbike"])


def test_uncalibrated_zero_shot_hint_names_the_mode(setup: tuple[Path, Path]) -> None:
    idx, test = setup
    res = ops.classify(idx, [test], "zeroshot")
    assert any(f"visrec calibrate {idx} --modes zeroshot" in n for n in res.notes)


def test_classify_table_paths_tell_rows_apart() -> None:
    paths = ["/d/test/Reds/0.png", "/d/test/Blues/0.png", "/d/test/Blues/1.png"]
    assert short_paths(paths) == ["Reds/0.png", "Blues/0.png", "Blues/1.png"]
    assert short_paths(["/a/x.png", "/a/y.png"]) == ["x.png", "y.png"]
