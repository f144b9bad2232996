"""Dataset readers: folder-per-label trees, unlabeled folders and Roboflow one-hot CSV exports.

Each reader returns a ``LabeledSet`` plus a ``LoadReport`` of what it left out and why. Record ids are the
POSIX path relative to the dataset root, so they are stable across runs and machines.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natsort import natsorted

from visrec.data.images import IMAGE_EXTENSIONS, UNDECODABLE_IMAGE_EXTENSIONS
from visrec.errors import BadInput, EmptyDataset
from visrec.types import ImageRecord, LabeledSet

log = logging.getLogger(__name__)

SPLIT_NAMES = frozenset({"train", "training", "valid", "val", "validation", "dev", "test", "testing"})
"""Folder names taken as split names (lower-cased) in ``root/<split>/<label>/...`` trees."""

_JUNK_DIRS = frozenset({"__MACOSX", "__pycache__"})

FOLDER_LAYOUT = "root/<label>/<image> (or root/<split>/<label>/<image> with split folders train/valid/test)"
UNLABELED_LAYOUT = "root/<image> or root/<any folders>/<image>"
ROBOFLOW_LAYOUT = "root/<split>/_classes.csv (filename,<class>,...) with the images beside each CSV"


@dataclass(frozen=True)
class Skipped:
    """One entry a reader left out: ``path`` relative to the root, a short ``reason`` key and a detail."""

    path: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class LoadReport:
    """What a reader saw but did not turn into records.

    ``skipped``: rows or files left out with a reason (``"missing"``, ``"outside-label-folder"``,
    ``"duplicate"``, ...). ``ignored``: number of non-image or hidden files passed over.
    """

    source: str
    skipped: tuple[Skipped, ...] = ()
    ignored: int = 0

    def counts(self) -> dict[str, int]:
        """Number of skipped entries per reason."""
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s.reason] = out.get(s.reason, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (every skipped entry is listed)."""
        return {
            "source": self.source,
            "ignored": self.ignored,
            "skipped_counts": self.counts(),
            "skipped": [{"path": s.path, "reason": s.reason, "detail": s.detail} for s in self.skipped],
        }


_UNSUPPORTED = "an image format this reader cannot decode (HEIC, JPEG XL, camera raw...); convert it to JPEG or PNG"


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") or part in _JUNK_DIRS for part in rel.parts)


_DIGITS = re.compile(r"[0-9]+")


def _number(m: re.Match[str]) -> str:
    digits = m.group().lstrip("0")
    return "\x00" + chr(0x21 + len(digits)) + digits


def natural_key(name: str) -> str:
    """Sort key that orders names as ``natsort.natsorted`` does (``img2`` before ``img10``), as one string:
    each run of digits becomes a marker below every character, its length without leading zeros, then its
    digits, so plain string comparison (in C) orders the numbers by value. About 8x faster than natsort's key
    on 200,000 paths, which matters when an update lists a large folder."""
    return _DIGITS.sub(_number, name)


def iter_folders(root: Path) -> Iterator[tuple[str, list[str]]]:
    """``(prefix, names)`` per folder under ``root``, lazily (a caller can stop early): the folder's POSIX path
    relative to ``root`` with a trailing ``/`` (``""`` for ``root``) and the names of its non-folder entries.
    Hidden files and folders (``.git``, ``._x.jpg``) and ``__MACOSX`` are left out; symlinked folders are not
    entered; dangling symlinks with image names are kept (decoding reports them instead of losing them). One
    ``scandir`` per folder: no ``stat`` per file."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (d.startswith(".") or d in _JUNK_DIRS)]
        base = os.path.relpath(folder, root)
        yield ("" if base == "." else base.replace(os.sep, "/") + "/"), [f for f in files if not f.startswith(".")]


def list_images(root: Path) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """``(folders, others)``: ``(prefix, image names)`` of every folder under ``root`` in natural order of
    the prefix (:func:`natural_key`), each folder's names naturally sorted; then the paths of the other
    (non-image) files, unsorted. A folder's files come before those of its subfolders.

    Built for large folders (200,000 files): paths stay strings, image names are recognised inline, and a
    folder whose names all have their digits at the same places (``img0000001.png`` ...) is sorted as plain
    strings, which is then the natural order; only other folders compute a natural key per name.
    """
    folders: list[tuple[str, list[str]]] = []
    others: list[str] = []
    exts = IMAGE_EXTENSIONS
    for prefix, names in iter_folders(root):
        images = [n for n in names if n[n.rfind(".") :].lower() in exts]
        if len(images) < len(names):
            others += [prefix + n for n in names if n[n.rfind(".") :].lower() not in exts]
        if len(set(map(_digit_mask, images))) <= 1:
            images.sort()
        else:
            images.sort(key=_natural_then_plain)
        folders.append((prefix, images))
    folders.sort(key=lambda f: _natural_then_plain(f[0]))
    return folders, others


def _natural_then_plain(name: str) -> tuple[str, str]:
    """Natural order, and names that are equal to it (``img2``, ``img02``) in plain order, not listing order."""
    return natural_key(name), name


_TO_ZERO = str.maketrans("123456789", "000000000")


def _digit_mask(name: str) -> str:
    return name.translate(_TO_ZERO)


def _require_dir(root: Path) -> None:
    if not root.exists():
        raise BadInput(f"dataset folder {root} does not exist; check the path")
    if not root.is_dir():
        raise BadInput(f"{root} is a file; give the dataset folder (or a manifest .csv)")


def _split_layout(root: Path) -> bool:
    """True when every top-level folder is a split name holding label folders."""
    tops = [d for d in root.iterdir() if d.is_dir() and not _is_hidden(Path(d.name))]
    if not tops or any(d.name.lower() not in SPLIT_NAMES for d in tops):
        return False
    return all(any(s.is_dir() for s in d.iterdir()) for d in tops)


def read_folders(root: str | Path) -> tuple[LabeledSet, LoadReport]:
    """Folder-per-label tree: ``root/<label>/**/<image>`` (the top folder is the label at any depth).

    When every top-level folder is a split name (train/valid/test...), the layout is taken as
    ``root/<split>/<label>/**/<image>`` and ``split`` is set. Images lying directly in ``root`` (or directly
    in a split folder) have no label folder: they are left out and listed in the report.
    """
    root = Path(root)
    _require_dir(root)
    with_split = _split_layout(root)
    depth = 2 if with_split else 1
    listed, others = list_images(root)
    skipped, ignored = _non_images(others)
    records: list[ImageRecord] = []
    classes: set[str] = set()
    of_file = ImageRecord.of_file
    for prefix, names in listed:  # the label (and split) of every file in a folder, from the folder's path
        parts = prefix.split("/")[:-1]
        if len(parts) < depth:
            skipped += [Skipped(prefix + n, "outside-label-folder", f"expected {FOLDER_LAYOUT}") for n in names]
            continue
        labels, split = (parts[depth - 1],), parts[0] if with_split else None
        records += [of_file(prefix + n, labels, split) for n in names]
        classes.update(labels if names else ())
    if not records:
        raise EmptyDataset(_empty_message(root, FOLDER_LAYOUT, ignored, len(skipped)))
    report = LoadReport("folder", tuple(skipped), ignored)
    return LabeledSet(root, tuple(records), tuple(natsorted(classes)), "folder"), report


def read_unlabeled(root: str | Path) -> tuple[LabeledSet, LoadReport]:
    """Every image under ``root`` at any depth, with no labels (folder names are not taken as labels)."""
    root = Path(root)
    _require_dir(root)
    listed, others = list_images(root)
    ignored = len(others)
    records = [ImageRecord.of_file(prefix + n) for prefix, names in listed for n in names]
    if not records:
        raise EmptyDataset(_empty_message(root, UNLABELED_LAYOUT, ignored, 0))
    return LabeledSet(root, tuple(records), (), "unlabeled"), LoadReport("unlabeled", (), ignored)


def _non_images(others: list[str]) -> tuple[list[Skipped], int]:
    """Images in formats that cannot be decoded (reported, sorted) and how many other files were ignored."""
    unsupported = sorted((rel for rel in others if os.path.splitext(rel)[1].lower() in UNDECODABLE_IMAGE_EXTENSIONS),
                         key=natural_key)  # fmt: skip
    return [Skipped(rel, "unsupported-format", _UNSUPPORTED) for rel in unsupported], len(others) - len(unsupported)


def _empty_message(root: Path, layout: str, ignored: int, skipped: int) -> str:
    msg = f"no usable image found in {root}; expected layout: {layout}"
    if ignored or skipped:
        msg += f" ({ignored} non-image or hidden file(s) ignored, {skipped} image(s) outside that layout)"
    return msg + ". Image suffixes: .jpg .jpeg .png .webp .bmp .gif .tif .tiff"


# ------------------------------------------------------------------------------------------- Roboflow


def roboflow_csvs(root: Path) -> list[Path]:
    """The ``_classes.csv`` files of a Roboflow export: ``root/_classes.csv`` or ``root/*/_classes.csv``."""
    if (root / "_classes.csv").is_file():
        return [root / "_classes.csv"]
    return natsorted((p for p in root.glob("*/_classes.csv") if not _is_hidden(Path(p.parent.name))), key=str)


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Rows of a CSV with stripped header names; ``utf-8-sig`` drops the BOM that Excel writes."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows = [dict(zip(header, (v.strip() for v in row), strict=False)) for row in reader if any(row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"cannot read {path}: {exc}; it must be a UTF-8 CSV file") from exc
    if not header or not header[0]:
        raise BadInput(f"{path} has no header row; expected filename,<class>,... or path,label,...")
    return header, rows


def _onehot_labels(row: Mapping[str, str], classes: Sequence[str], where: str) -> tuple[str, ...]:
    if row.get("Unlabeled", "0") not in ("", "0"):
        return ()
    labels = []
    for c in classes:
        value = row.get(c, "0")
        if value not in ("0", "1", ""):
            raise BadInput(
                f"{where}: column {c!r} holds {value!r}; one-hot columns must be 0 or 1 (a CSV with a column of "
                "label names is a manifest: name its columns path,label and give --format manifest)"
            )
        if value == "1":
            labels.append(c)
    return tuple(labels)


def read_roboflow(root: str | Path) -> tuple[LabeledSet, LoadReport]:
    """Roboflow multi-class export: ``root/<split>/_classes.csv`` + images beside each CSV.

    Header ``filename,<class>,...`` (one-hot 0/1; names stripped of Roboflow's leading spaces). A row with
    several 1s is multi-label; a row with none, or with ``Unlabeled`` set, is unlabeled (``labels == ()``);
    ``Unlabeled`` is never a class. ``split`` is the CSV's folder name. Rows whose file is missing are left
    out and listed in the report as ``"missing"``.
    """
    root = Path(root)
    _require_dir(root)
    csvs = roboflow_csvs(root)
    if not csvs:
        raise EmptyDataset(f"no _classes.csv found in {root}; expected layout: {ROBOFLOW_LAYOUT}")
    records: list[ImageRecord] = []
    skipped: list[Skipped] = []
    classes: set[str] = set()
    for csv_path in csvs:
        header, rows = read_csv_rows(csv_path)
        if len(header) < 2:
            raise BadInput(
                f"{csv_path} has no class columns (header {header}); expected {ROBOFLOW_LAYOUT}. To index the "
                "images without labels, give --format unlabeled"
            )
        split_classes = [h for h in header[1:] if h and h != "Unlabeled"]
        classes.update(split_classes)
        folder = csv_path.parent
        split = folder.name if folder != root else None
        for n, row in enumerate(rows, start=2):
            rel = (folder.relative_to(root) / row[header[0]]).as_posix()
            if not (root / rel).exists():
                skipped.append(Skipped(rel, "missing", f"listed in {csv_path.name} line {n}, file not found"))
                continue
            labels = _onehot_labels(row, split_classes, f"{csv_path} line {n}")
            records.append(ImageRecord(id=rel, path=rel, labels=labels, split=split))
    records = drop_duplicate_ids(records, skipped)
    if not records:
        raise EmptyDataset(
            f"the _classes.csv files in {root} list no existing image; expected layout: {ROBOFLOW_LAYOUT}"
        )
    dataset = LabeledSet(root, tuple(records), tuple(natsorted(classes)), "roboflow")
    return dataset, LoadReport("roboflow", tuple(skipped))


def drop_duplicate_ids(records: Sequence[ImageRecord], skipped: list[Skipped]) -> list[ImageRecord]:
    """Keep the first record of each id; later ones are appended to ``skipped`` as ``"duplicate"``."""
    seen: set[str] = set()
    kept: list[ImageRecord] = []
    for r in records:
        if r.id in seen:
            skipped.append(Skipped(r.path, "duplicate", f"id {r.id!r} is listed more than once; first kept"))
        else:
            seen.add(r.id)
            kept.append(r)
    return kept


def printable(name: str) -> str:
    """``name`` as text any display takes: each byte of a file or folder name that is not UTF-8 (which Python
    gives as a surrogate escape, ``os.fsdecode(b"img_\\xff.jpg")``) becomes U+FFFD. Valid text is returned as is."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that no file name gives
        return name.encode("utf-8", "replace").decode("utf-8")
