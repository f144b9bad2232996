"""A face index: one row per face (vector, person, source file, box), the pipeline that made it, a calibration.

Folder layout: ``faces.npy`` (``(n, dim)`` float32), ``faces.json`` (schema, pipeline, rows), ``calibration.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadImage, BadInput, IndexCorrupt, ManifestMismatch
from visrec.faces.calibrate import Calibration, calibrate, distance_matrix, pair_distances
from visrec.faces.openset import DEFAULT_FPIR, calibrate_open_set
from visrec.faces.pipeline import FacePipeline
from visrec.npyio import load_npy

SCHEMA = 1


@dataclass(frozen=True)
class FaceMatch:
    """One face of a query image: ``label`` is None for unknown; ``candidate`` is the nearest person."""

    xyxy: tuple[float, float, float, float]
    label: str | None
    candidate: str
    distance: float
    probability: float | None


@dataclass
class FaceGallery:
    """Labeled face embeddings. ``rows``: dicts with ``label``, ``path``, ``box`` (xyxy) per vector."""

    vectors: np.ndarray
    rows: list[dict[str, Any]]
    pipeline: dict[str, Any]
    calibration: Calibration | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.rows):
            raise IndexCorrupt(f"face index has {self.vectors.shape} vectors for {len(self.rows)} rows; rebuild it")

    @property
    def labels(self) -> list[str]:
        return [str(r["label"]) for r in self.rows]

    def calibrate(self, target_far: float = 1e-3, target_fpir: float = DEFAULT_FPIR) -> Calibration | None:
        """Calibrate verification from all same/different pairs of the gallery (at ``target_far`` per pair) and
        identification by leaving identities out (at ``target_fpir``, the share of strangers named).

        None when there are no same pairs.
        """
        dist, same = pair_distances(self.vectors, self.labels)
        if not same.any() or same.all():
            return None
        ident = calibrate_open_set(self.vectors, self.labels, target_fpir)
        self.calibration = replace(calibrate(dist, same, target_far), identification=ident)
        return self.calibration

    def match(self, vectors: np.ndarray, threshold: float) -> list[tuple[str | None, str, float, float | None]]:
        """Nearest person for each ``(m, dim)`` query: ``(label or None, candidate, distance, probability)``."""
        if len(self.rows) == 0:
            raise BadInput("the face index is empty; index a folder with one sub-folder per person")
        d = distance_matrix(vectors, self.vectors)
        out = []
        for row in d:
            j = int(np.argmin(row))
            dist, cand = float(row[j]), self.labels[j]
            prob = None if self.calibration is None else float(self.calibration.probability(dist))
            out.append((cand if dist <= threshold else None, cand, dist, prob))
        return out

    def save(self, folder: str | Path) -> None:
        """Write the index folder (created if needed)."""
        out = Path(folder)
        if _is_image_index(out):
            raise BadInput(
                f"{out} is an image index (visrec index); write the face index to a folder of its own, "
                f"e.g. --out {out.with_suffix('.faces')}"
            )
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "faces.npy", self.vectors.astype(np.float32))
        meta = {"schema": SCHEMA, "pipeline": self.pipeline, "rows": self.rows, "skipped": self.skipped}
        (out / "faces.json").write_text(json.dumps(meta, indent=1))
        if self.calibration is not None:
            self.calibration.save(out / "calibration.json")

    @staticmethod
    def load(folder: str | Path) -> FaceGallery:
        """Read an index folder written by :meth:`save`."""
        src = Path(folder)
        if not (src / "faces.json").is_file():
            # never advise writing face files into an image index
            target = src.with_suffix(".faces") if _is_image_index(src) or src.exists() else src
            kind = "an image index (visrec index)" if _is_image_index(src) else "not a face index"
            raise BadInput(
                f"{src} is {kind}; face commands need a face index: build one with "
                f"`visrec faces index PHOTOS_DIR --out {target}` (one sub-folder of photos per person)"
            )
        meta = json.loads((src / "faces.json").read_text())
        if meta.get("schema") != SCHEMA:
            raise IndexCorrupt(f"{src}: face index schema {meta.get('schema')!r} is not {SCHEMA}; rebuild it")
        cal = Calibration.load(src / "calibration.json") if (src / "calibration.json").is_file() else None
        vectors = load_npy(src / "faces.npy")
        return FaceGallery(vectors, meta["rows"], meta["pipeline"], cal, meta.get("skipped", {}))

    def check_pipeline(self, pipeline: FacePipeline) -> None:
        """Refuse queries embedded by another embedder than the index's."""
        built, now = self.pipeline.get("embedder", {}), pipeline.describe()["embedder"]
        if built.get("name") != now.get("name") or built.get("dim") != now.get("dim"):
            raise ManifestMismatch(f"index built with embedder {built}, queried with {now}; use the same embedder")


def build_gallery(
    items: Iterable[tuple[Path, str]],
    pipeline: FacePipeline,
    all_faces: bool = False,
    target_far: float = 1e-3,
    target_fpir: float = DEFAULT_FPIR,
) -> FaceGallery:
    """Embed the faces of ``(path, person)`` items and calibrate (see :meth:`FacePipeline.find_labeled`).

    One face per photo (its main face) unless ``all_faces``. Unreadable files, photos with no face and photos
    whose other detections were dropped are listed in ``skipped`` (``bad_image`` / ``no_face`` /
    ``dropped_faces``, the last once per dropped detection).
    """
    from visrec.data import load_image

    vecs: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    skipped: dict[str, list[str]] = {"bad_image": [], "no_face": [], "dropped_faces": []}
    for path, label in items:
        try:
            image = load_image(path)
        except BadImage:
            skipped["bad_image"].append(str(path))
            continue
        found = pipeline.find_labeled(image, all_faces)
        if len(found.faces) == 0:
            skipped["no_face"].append(str(path))
        skipped["dropped_faces"] += [str(path)] * found.dropped
        for i in range(len(found.faces)):
            rows.append({"label": label, "path": str(path), "box": [round(float(x), 1) for x in found.faces.xyxy[i]]})
            vecs.append(found.vectors[i])
    dim = pipeline.embedder.dim
    gallery = FaceGallery(np.array(vecs, np.float32).reshape(-1, dim), rows, pipeline.describe(), None, skipped)
    if len(set(gallery.labels)) > 1:
        gallery.calibrate(target_far, target_fpir)
    return gallery


def _is_image_index(folder: Path) -> bool:
    """Whether ``folder`` holds an image index (its ``manifest.json``) rather than a face index."""
    from visrec.index.folder import IndexFolder

    return IndexFolder.is_index(folder) and not (folder / "faces.json").is_file()
