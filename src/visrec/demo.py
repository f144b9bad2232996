"""The end-to-end job on real weights: index a leak-free train split, classify the test split, search by text.

Data, in order: the folder the user names; ``naruto_roboflow`` from a ``shared/data`` folder beside the
repository or the working directory; else a small set cut from the two photos scikit-learn ships (a temple
and a flower), with train and test crops from the two colours of a checkerboard of tiles, so that no test pixel
was seen in training.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.index.pipeline import Progress
from visrec.types import LabeledSet

NARUTO = Path("shared") / "data" / "naruto_roboflow"


def find_shared_naruto() -> Path | None:
    """``naruto_roboflow`` beside the repository or the working directory, if present."""
    repo = Path(__file__).resolve().parents[2]
    for base in (repo.parent, Path.cwd().parent, Path.cwd()):
        if (base / NARUTO / "manifest.csv").is_file():
            return base / NARUTO
    return None


def sample_photos_dataset(dest: Path, per_tile: int = 4, size: int = 128, seed: int = 0) -> Path:
    """Write ``dest/<label>/<train|test>_NN.jpg`` crops of scikit-learn's sample photos; returns ``dest``.

    Each photo is cut into a 3 x 4 grid of tiles coloured like a checkerboard: train crops come from the
    dark tiles and test crops from the light ones, so both sides cover the whole scene yet share no pixel.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    rng = np.random.default_rng(seed)
    for name, img in zip(("temple", "flower"), photos.images, strict=True):
        (dest / name).mkdir(parents=True, exist_ok=True)
        th, tw = img.shape[0] // 3, img.shape[1] // 4
        count = {"train": 0, "test": 0}
        for r in range(3):
            for c in range(4):
                side = "train" if (r + c) % 2 == 0 else "test"
                for _ in range(per_tile):
                    s = int(rng.integers(int(0.6 * min(th, tw)), min(th, tw) + 1))
                    y = r * th + int(rng.integers(0, th - s + 1))
                    x = c * tw + int(rng.integers(0, tw - s + 1))
                    crop = Image.fromarray(img[y : y + s, x : x + s]).resize((size, size), Image.Resampling.BILINEAR)
                    crop.save(dest / name / f"{side}_{count[side]:02d}.jpg", quality=90)
                    count[side] += 1
    return dest


def sample_photos_folder(parent: Path | None = None) -> Path:
    """The sample-photo dataset under ``parent`` (default: the cache folder, so that the working directory stays
    clean), written once: built in a temporary folder and renamed into place, so a crash never leaves half of it."""
    import os
    import tempfile

    from visrec.encoders.cache import cache_dir

    base = parent or cache_dir()
    dest = base / "visrec-demo-photos-v1"
    if (dest / "flower").is_dir() and (dest / "temple").is_dir():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=".demo-photos-", dir=base))
    try:
        sample_photos_dataset(tmp)
        try:
            os.replace(tmp, dest)
        except OSError:  # another process put it in place first
            if not dest.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


@dataclass
class DemoResult:
    dataset: str
    split_rule: str
    n_train: int
    n_test: int
    index: dict[str, Any]
    summary: dict[str, Any] | None
    searches: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "knn"

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def lines(self) -> list[str]:
        s = self.summary or {}
        out = [
            f"dataset: {self.dataset}  ({self.split_rule}: {self.n_train} train, {self.n_test} test)",
            f"index: {self.index['path']} ({self.index['count']} items, {self.index['embedded_per_second']} images/s)",
        ]
        if s:
            out.append(
                f"{self.mode} classifier on the test split: top-1 {100 * s['top1']:.1f}%, "
                f"macro-F1 {100 * s['macro_f1']:.1f}%, unknown {100 * s['unknown_rate']:.1f}% "
                f"(before the unknown decision: {100 * s['top1_raw']:.1f}%)"
            )
        for q in self.searches:
            hits = ", ".join(f"{'/'.join(h['labels']) or '-'} {h['score']:.2f}" for h in q["hits"][:5])
            line = f"search {q['query']!r} via {q['route']}: {hits}"
            if q.get("matches_query") is False and q.get("concepts"):
                line += f" (none of them looks like {q['concepts'][0]!r} to the bridge: nothing here is what it names)"
            out.append(line)
        return out


def _split(ds: LabeledSet) -> tuple[LabeledSet, LabeledSet, str]:
    recs = ds.records
    if any("grouped_split" in r.extra for r in recs):
        key, rule = (lambda r: r.extra.get("grouped_split")), "manifest grouped_split"
    elif {r.split for r in recs} >= {"train", "test"}:
        key, rule = (lambda r: r.split), "split"
    elif all(Path(r.path).name.split("_")[0] in ("train", "test") for r in recs):
        key, rule = (lambda r: Path(r.path).name.split("_")[0]), "file name prefix"
    else:
        from visrec.data import grouped_split, hash_dataset, near_duplicate_groups

        h = hash_dataset(ds)
        split = grouped_split(ds, dict(zip(h.ids, near_duplicate_groups(h.hashes).tolist(), strict=True)))
        recs = tuple(replace(r, split=split[r.id]) for r in recs)
        key, rule = (lambda r: r.split), "near-duplicate-grouped split"
    train = [r for r in recs if key(r) == "train"]
    test = [r for r in recs if key(r) == "test" and r.labels]
    if not train or not test:
        raise BadInput(f"{ds.root}: could not form a train and a labeled test split")
    return ds.subset(train), ds.subset(test), rule


def run(
    data: Path | None,
    out: Path,
    progress: Progress | None = None,
    workdir: Path | None = None,
    sample: bool = False,
) -> DemoResult:
    """Index the train split of ``data`` (see the module docstring) into ``out`` and evaluate the test split."""
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.eval import summarize
    from visrec.index import Index
    from visrec.index.writer import build_index

    src = data or (None if sample else find_shared_naruto())
    if src is None:
        src = sample_photos_folder(workdir)
    ds = load_dataset(src)
    train, test, rule = _split(ds)
    report = build_index(train, out, create_encoder(), None, progress)
    idx = Index(out)
    emb = idx.encode([test.abspath(r) for r in test.records])
    mode = idx.resolve_mode("auto")
    preds = idx.classify(emb, mode, calibrated=bool(idx.calibration_data()))
    summary = summarize([r.labels for r in test.records], preds).to_dict()
    first = next(iter(idx.labels()))
    searches = [idx.search_text(first, k=5).to_dict()]
    if idx.joint is not None:
        searches.append(idx.search_text("a photo of a flower", k=5, route="joint").to_dict())
    return DemoResult(str(src), rule, len(train), len(test), report.to_dict(), summary, searches, mode)
