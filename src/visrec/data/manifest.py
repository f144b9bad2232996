"""The manifest CSV format: one row per image, read and written so that it round-trips.

Columns: ``path`` (relative to the CSV's folder, POSIX) and ``label`` or ``labels`` (``|``-separated for
multi-label, empty for unlabeled) are required; ``id``, ``split``, ``group`` (or ``dup_group``), ``sha256``,
``width``, ``height`` are optional; any other column is kept in ``ImageRecord.extra`` (empty cells
are treated as absent).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from natsort import natsorted

from visrec.data._parallel import run_threads
from visrec.data.images import file_facts
from visrec.data.readers import LoadReport, Skipped, drop_duplicate_ids, read_csv_rows
from visrec.errors import BadImage, BadInput, EmptyDataset
from visrec.types import ImageRecord, LabeledSet

MANIFEST_NAME = "manifest.csv"
LABEL_SEPARATOR = "|"
_KNOWN = ("id", "path", "label", "labels", "split", "group", "dup_group", "sha256", "width", "height")
MANIFEST_LAYOUT = "a CSV with columns path,label (or labels, '|'-separated) and optional split,group,..."


def _split_labels(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(LABEL_SEPARATOR) if v.strip())


def _clean_path(value: str) -> str:
    text = value.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def _int_field(row: dict[str, str], name: str, where: str) -> int:
    value = row.get(name, "")
    if not value:
        return 0
    try:
        return int(value)
    except ValueError as exc:
        raise BadInput(f"{where}: column {name!r} must be an integer, got {value!r}") from exc


def _record(row: dict[str, str], label_col: str, where: str) -> ImageRecord:
    path = _clean_path(row["path"])
    # An empty cell is an absent value: CSV cannot tell them apart, so both read back as missing.
    extra = {k: v for k, v in row.items() if k and v and k not in _KNOWN}
    return ImageRecord(
        id=row.get("id") or path,
        path=path,
        labels=_split_labels(row.get(label_col, "")),
        split=row.get("split") or None,
        sha256=row.get("sha256", ""),
        width=_int_field(row, "width", where),
        height=_int_field(row, "height", where),
        group=row.get("group") or row.get("dup_group") or None,
        extra=extra,
    )


def read_manifest(path: str | Path) -> tuple[LabeledSet, LoadReport]:
    """Read a manifest CSV (or the ``manifest.csv`` inside a folder); paths are relative to its folder.

    Rows with an empty path or whose file does not exist are left out and listed in the report
    (``"missing"``); a repeated id keeps its first row (``"duplicate"``).
    """
    csv_path = Path(path)
    if csv_path.is_dir():
        csv_path = csv_path / MANIFEST_NAME
    if not csv_path.is_file():
        raise BadInput(f"manifest {csv_path} does not exist; expected {MANIFEST_LAYOUT}")
    header, rows = read_csv_rows(csv_path)
    label_col = "labels" if "labels" in header else "label"
    if "path" not in header or label_col not in header:
        raise BadInput(
            f"{csv_path} has columns {header}; expected at least 'path' and 'label' (or 'labels'). "
            "Add an empty label column for unlabeled images"
        )
    root = csv_path.parent
    records: list[ImageRecord] = []
    skipped: list[Skipped] = []
    for n, row in enumerate(rows, start=2):
        where = f"{csv_path} line {n}"
        if not row.get("path"):
            skipped.append(Skipped(f"line {n}", "missing", f"{where}: empty path"))
            continue
        rec = _record(row, label_col, where)
        if not (root / rec.path).exists():
            skipped.append(Skipped(rec.path, "missing", f"{where}: file not found under {root}"))
            continue
        records.append(rec)
    records = drop_duplicate_ids(records, skipped)
    if not records:
        raise EmptyDataset(f"{csv_path} lists no existing image file; expected {MANIFEST_LAYOUT}")
    classes = tuple(natsorted({lab for r in records for lab in r.labels}))
    return LabeledSet(root, tuple(records), classes, "manifest"), LoadReport("manifest", tuple(skipped))


def _manifest_columns(records: Sequence[ImageRecord], paths: Sequence[str]) -> list[str]:
    with_id = any(r.id != p for r, p in zip(records, paths, strict=True))
    multi = any(len(r.labels) > 1 for r in records)
    extra: dict[str, None] = {}
    for r in records:
        extra.update(dict.fromkeys(k for k in r.extra if k not in _KNOWN))
    base = ["path", "labels" if multi else "label", "split", "group", "sha256", "width", "height"]
    return (["id"] if with_id else []) + base + list(extra)


def _row(r: ImageRecord, path: str) -> dict[str, Any]:
    return {
        "id": r.id,
        "path": path,
        "label": LABEL_SEPARATOR.join(r.labels),
        "labels": LABEL_SEPARATOR.join(r.labels),
        "split": r.split or "",
        "group": r.group or "",
        "sha256": r.sha256,
        "width": r.width or "",
        "height": r.height or "",
        **r.extra,
    }


def write_manifest(dataset: LabeledSet, path: str | Path) -> Path:
    """Write ``dataset`` as a manifest CSV at ``path`` (a ``.csv`` file, or a folder -> ``manifest.csv``).

    Paths are written relative to the CSV's folder; an ``id`` column is added only when some id differs
    from its path. ``label`` becomes ``labels`` when any record is multi-label. The file is replaced
    atomically. Returns the CSV path. :func:`read_manifest` reads it back to an equal dataset.
    """
    out = Path(path)
    if out.is_dir() or not out.suffix:
        out = out / MANIFEST_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.resolve()
    paths = [Path(os.path.relpath((dataset.root / r.path).resolve(), base)).as_posix() for r in dataset.records]
    columns = _manifest_columns(dataset.records, paths)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r, p in zip(dataset.records, paths, strict=True):
            writer.writerow(_row(r, p))
    tmp.replace(out)
    return out


def describe_files(
    dataset: LabeledSet, *, workers: int = 2, progress: bool = False
) -> tuple[LabeledSet, list[BadImage]]:
    """Fill ``sha256``, ``width`` and ``height`` of every record by reading (and verifying) its file.

    Runs ``workers`` threads (decoding releases the GIL). Returns the dataset of the good records, in the
    original order, and the ``BadImage`` of every file that could not be used (with its reason), so the
    caller can count and report them; nothing is dropped silently.
    """
    if workers < 1:
        raise BadInput(f"workers must be >= 1, got {workers}")
    records = dataset.records

    def facts(r: ImageRecord) -> ImageRecord | BadImage:
        try:
            sha, w, h = file_facts(dataset.abspath(r))
        except BadImage as bad:
            return bad
        return replace(r, sha256=sha, width=w, height=h)

    results = run_threads(facts, records, workers, progress, "reading image files")
    good = [x for x in results if isinstance(x, ImageRecord)]
    bad = [x for x in results if isinstance(x, BadImage)]
    return dataset.subset(good), bad
