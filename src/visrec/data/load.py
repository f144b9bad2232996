"""``load_dataset``: detect a dataset's layout and read it with the matching reader."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from visrec.data.images import is_image_file
from visrec.data.manifest import MANIFEST_LAYOUT, MANIFEST_NAME, read_manifest
from visrec.data.readers import (
    FOLDER_LAYOUT,
    ROBOFLOW_LAYOUT,
    UNLABELED_LAYOUT,
    LoadReport,
    iter_folders,
    read_folders,
    read_roboflow,
    read_unlabeled,
    roboflow_csvs,
)
from visrec.errors import BadInput, EmptyDataset
from visrec.gcpause import paused_gc
from visrec.types import LabeledSet

log = logging.getLogger(__name__)

Reader = Callable[[Path], tuple[LabeledSet, LoadReport]]
READERS: dict[str, Reader] = {
    "folders": read_folders,
    "unlabeled": read_unlabeled,
    "roboflow": read_roboflow,
    "manifest": read_manifest,
}
FORMATS = tuple(READERS)


def detect_format(path: str | Path) -> str:
    """Name of the reader for ``path``: ``"manifest" | "roboflow" | "folders" | "unlabeled"``.

    A ``.csv`` file or a folder holding ``manifest.csv`` -> manifest; ``_classes.csv`` in the folder or in
    its split folders -> roboflow; images inside subfolders -> folders; images directly -> unlabeled.
    Raises ``BadInput`` for a missing path and ``EmptyDataset`` when no layout matches.
    """
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p} does not exist; give a dataset folder or a manifest .csv")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "manifest"
        raise BadInput(f"{p} is a file but not a .csv manifest; give the dataset folder or a manifest .csv")
    if (p / MANIFEST_NAME).is_file():
        return "manifest"
    if roboflow_csvs(p):
        return "roboflow"
    seen_image = False
    for prefix, names in iter_folders(p):  # stops at the first image in a subfolder: no full listing of a tree
        if any(is_image_file(name) for name in names):
            if prefix:
                return "folders"
            seen_image = True
    if seen_image:
        return "unlabeled"
    raise EmptyDataset(
        f"no image found in {p}. Expected one of: folders: {FOLDER_LAYOUT}; unlabeled: {UNLABELED_LAYOUT}; "
        f"roboflow: {ROBOFLOW_LAYOUT}; manifest: {MANIFEST_LAYOUT}"
    )


def read_dataset(path: str | Path, format: str | None = None) -> tuple[LabeledSet, LoadReport]:
    """Like :func:`load_dataset` but also returns the ``LoadReport`` (rows and files left out, and why)."""
    fmt = detect_format(path) if format is None else format
    reader = READERS.get(fmt)
    if reader is None:
        raise BadInput(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    with paused_gc():  # a large folder makes a million small objects; see visrec.gcpause
        return reader(Path(path))


def load_dataset(path: str | Path, format: str | None = None) -> LabeledSet:
    """Read a dataset folder or manifest into a ``LabeledSet`` (layout auto-detected unless ``format``).

    ``format``: ``"folders"`` (``root/<label>/<img>``), ``"unlabeled"`` (every image, no labels),
    ``"roboflow"`` (``root/<split>/_classes.csv``) or ``"manifest"`` (a CSV with path,label,...). Record
    ids are paths relative to the root (POSIX); classes are in natural sort order. Entries left out (e.g.
    CSV rows whose file is missing) are logged as a warning; use :func:`read_dataset` to get them.
    Raises ``EmptyDataset`` (naming the folder and the expected layout) when nothing usable is found.
    """
    dataset, report = read_dataset(path, format)
    if report.skipped:
        log.warning("%s: %d entries left out: %s", path, len(report.skipped), report.counts())
    return dataset
