"""Face operations behind the CLI: index a folder of people, verify two photos, identify, cluster faces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visrec.errors import BadImage, BadInput, EmptyDataset
from visrec.faces.calibrate import Calibration, distance_matrix
from visrec.faces.gallery import FaceGallery, FaceMatch, build_gallery
from visrec.faces.openset import DEFAULT_FPIR
from visrec.faces.pipeline import FacePipeline


def person_items(root: Path) -> list[tuple[Path, str]]:
    """``(file, person)`` for every image in ``root/<person>/``; raises ``EmptyDataset`` when there is none."""
    from visrec.data import is_image_file

    items = [(f, d.name) for d in sorted(Path(root).iterdir()) if d.is_dir() for f in sorted(d.rglob("*"))]
    items = [(f, lab) for f, lab in items if f.is_file() and is_image_file(f)]
    if not items:
        raise EmptyDataset(f"{root}: expected one sub-folder of photos per person, found no image in sub-folders")
    return items


def index_faces(
    root: Path, out: Path, pipeline: FacePipeline, all_faces: bool, target_far: float, target_fpir: float = DEFAULT_FPIR
) -> FaceGallery:
    """Build and save a face index of ``root`` (one folder per person) in ``out``."""
    gallery = build_gallery(person_items(root), pipeline, all_faces, target_far, target_fpir)
    if not gallery.rows:
        raise EmptyDataset(f"{root}: no face found in any photo; check the photos (faces >= ~40 px)")
    gallery.save(out)
    return gallery


def _largest(pipeline: FacePipeline, path: Path) -> np.ndarray:
    from visrec.data import load_image

    faces, v = pipeline.find(load_image(path), largest_only=True)
    if len(faces) == 0:
        raise BadInput(f"{path}: no face found; use a photo where the face is visible and at least ~40 px wide")
    return v[0]


def verify(a: Path, b: Path, pipeline: FacePipeline, calibration: Calibration | None) -> dict[str, Any]:
    """Same person? Largest face of each photo: distance, calibrated probability (or None), decision, threshold."""
    d = float(distance_matrix(_largest(pipeline, a)[None], _largest(pipeline, b)[None])[0, 0])
    thr = calibration.threshold if calibration else pipeline.default_threshold
    prob = float(calibration.probability(d)) if calibration else None
    return {
        "a": str(a), "b": str(b), "distance": d, "probability": prob, "same": d <= thr, "threshold": thr,
        "threshold_source": f"calibrated at FAR {calibration.target_far:g}" if calibration else "default",
    }  # fmt: skip


def identify(gallery: FaceGallery, image_path: Path, pipeline: FacePipeline) -> tuple[np.ndarray, list[FaceMatch]]:
    """Every face in the photo -> person or unknown (None). Returns the RGB image and one match per face."""
    from visrec.data import load_image

    gallery.check_pipeline(pipeline)
    image = load_image(image_path)
    faces, vecs = pipeline.find(image)
    thr = gallery.calibration.identify_threshold if gallery.calibration else pipeline.default_threshold
    matches = gallery.match(vecs, thr) if len(faces) else []
    h, w = image.shape[:2]
    boxes = np.clip(np.asarray(faces.xyxy, np.float64), 0.0, [w, h, w, h])  # a face at the edge: box inside the photo
    out = [FaceMatch(tuple(float(x) for x in boxes[i]), *m) for i, m in enumerate(matches)]  # type: ignore[arg-type]
    return image, out


def face_index_info(folder: Path) -> dict[str, Any]:
    """What a face index holds: people, faces, pipeline, skipped photos and both calibrated rules."""
    g = FaceGallery.load(folder)
    cal = g.calibration
    return {
        "index": str(folder), "kind": "faces", "people": len(set(g.labels)), "faces": len(g.rows),
        "pipeline": g.pipeline, "skipped": {k: len(v) for k, v in g.skipped.items()},
        "verification": None if cal is None else {"threshold": cal.threshold, "target_far": cal.target_far,
                                                  "tar_at_threshold": cal.tar_at_threshold, "auc": cal.auc},
        "identification": identification_summary(cal),
    }  # fmt: skip


def identification_summary(cal: Calibration | None) -> dict[str, Any] | None:
    """The open-set identification rule in words and figures (None when the index has none)."""
    ident = None if cal is None else cal.identification
    if ident is None:
        return None
    bound = (
        f"at most {ident.target_fpir:.1%} of photos of people not in the index get a name"
        if ident.target_fpir >= ident.resolution
        else f"{ident.strangers} stranger searches cannot resolve {ident.target_fpir:.1%}: no stranger was named"
    )
    return ident.to_dict() | {"bounds": bound}


def draw_matches(image: np.ndarray, matches: Sequence[FaceMatch]) -> Image.Image:
    """A copy of the RGB image with a box and name (green) or "unknown" (red) per face."""
    from visrec.drawing import draw_box, pen_for

    im = Image.fromarray(image).convert("RGB")
    pen = pen_for(im.size)
    for m in matches:
        colour = (0, 200, 0) if m.label else (230, 0, 0)
        draw_box(im, m.xyxy, f"{m.label or 'unknown'} {m.distance:.2f}", colour, pen)
    return im


def embed_faces(
    root: Path, pipeline: FacePipeline, main_only: bool = False
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], dict[str, str]]:
    """Every face of every image under ``root`` (``main_only``: only each photo's main face, the most central of
    the largest, as ``faces index`` keeps): ids ``<relpath>#<i>``, ``(n, dim)`` vectors, face crops, and the
    images that could not be read (path -> reason, e.g. ``"truncated"``), left out."""
    from visrec.cluster.run import image_files, unreadable_counts
    from visrec.data import load_image
    from visrec.faces.pipeline import main_face

    ids: list[str] = []
    vecs: list[np.ndarray] = []
    crops: dict[str, np.ndarray] = {}
    unreadable: dict[str, str] = {}
    for f in image_files(root):
        try:
            image = load_image(f)
        except BadImage as bad:  # one broken photo does not stop the folder; it is listed instead
            unreadable[str(f)] = bad.reason
            continue
        faces, v = pipeline.find(image)
        rows = [main_face(faces)] if main_only and len(faces) else range(len(faces))
        for i in rows:
            item = f"{f.relative_to(root).as_posix()}#{i}"
            x0, y0, x1, y1 = (int(max(0, round(float(c)))) for c in faces.xyxy[i])
            ids.append(item)
            vecs.append(v[i])
            crops[item] = np.ascontiguousarray(image[y0:y1, x0:x1])
    if not ids:
        left_out = f" ({len(unreadable)} unreadable: {unreadable_counts(unreadable)})" if unreadable else ""
        raise EmptyDataset(f"{root}: no face found in any image{left_out}")
    return ids, np.array(vecs, np.float32), crops, unreadable
