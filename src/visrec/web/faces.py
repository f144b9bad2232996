"""Faces for the web layer: one lazily built dlib pipeline, verify two uploads, identify every face in one.

The pipeline needs the ``faces`` extra; without it every call raises ``MissingExtra`` (HTTP 503) naming the
install command. Identification needs a face index (``visrec faces index``) given to ``visrec serve --faces``.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.errors import BadInput, VisrecError

if TYPE_CHECKING:
    from visrec.faces import FaceGallery, FaceMatch, FacePipeline
    from visrec.web.service import Upload

INSTALL = "pip install 'visrec[faces]'"


class NoFaceIndex(VisrecError):
    """Face identification was asked of a server started without a face index."""

    exit_code = 2


def faces_missing() -> str | None:
    """None when the dlib face backends are installed, else what is missing and the command that installs it."""
    for module, package in (("dlib", "dlib-bin"), ("face_recognition_models", "face-recognition-models")):
        if importlib.util.find_spec(module) is None:
            return f"Faces need the package {package!r}, which is not installed. Install it with: {INSTALL}"
    return None


class FaceService:
    """Verify and identify faces in uploads; ``gallery`` (optional) is the face index to identify against and
    whose calibrated threshold both use (else the embedder's default threshold)."""

    def __init__(self, gallery: FaceGallery | None) -> None:
        self.gallery = gallery
        self._pipe: FacePipeline | None = None
        self._lock = threading.Lock()

    def pipeline(self) -> FacePipeline:
        """The detector + embedder (built once; the gallery's own when there is one). Raises ``MissingExtra``."""
        from visrec.faces import create_face_pipeline
        from visrec.faces.pipeline import DEFAULT_DETECTOR, DEFAULT_EMBEDDER

        with self._lock:
            if self._pipe is None:
                built = self.gallery.pipeline if self.gallery is not None else {}
                det, emb = built.get("detector", {}), built.get("embedder", {})
                opts = {k: det[k] for k in ("max_side", "upsample", "min_score") if k in det}
                self._pipe = create_face_pipeline(
                    str(det.get("name", DEFAULT_DETECTOR)), str(emb.get("name", DEFAULT_EMBEDDER)), **opts
                )
            return self._pipe

    def find(self, pixels: np.ndarray, largest_only: bool = False) -> tuple[Any, np.ndarray]:
        """The pipeline's faces and ``(n, dim)`` unit embeddings of an RGB uint8 image (one call at a time)."""
        pipe = self.pipeline()
        with self._lock:  # one dlib call at a time: its detector objects are not shared across threads
            return pipe.find(pixels, largest_only=largest_only)

    def _threshold(self) -> tuple[float, str]:
        cal = self.gallery.calibration if self.gallery is not None else None
        if cal is not None:
            return float(cal.threshold), f"calibrated at FAR {cal.target_far:g}"
        return float(self.pipeline().default_threshold), "default"

    def _identify_threshold(self) -> tuple[float, str]:
        cal = self.gallery.calibration if self.gallery is not None else None
        if cal is not None and cal.identification is not None:
            return float(cal.identify_threshold), f"calibrated at FPIR {cal.identification.target_fpir:g}"
        return self._threshold()

    def verify(self, a: Upload, b: Upload) -> dict[str, Any]:
        """Same person? The largest face of each upload: boxes (xyxy pixels), cosine distance, calibrated
        probability (None without a calibrated face index), the decision and the threshold used."""
        from visrec.faces import distance_matrix

        found = []
        for up in (a, b):
            faces, vecs = self.find(up.pixels, largest_only=True)
            if len(faces) == 0:
                raise BadInput(f"{up.name}: no face found; use a photo where the face is visible and >= ~40 px wide")
            found.append(([round(float(v), 1) for v in faces.xyxy[0]], vecs[0]))
        d = float(distance_matrix(found[0][1][None], found[1][1][None])[0, 0])
        thr, source = self._threshold()
        cal = self.gallery.calibration if self.gallery is not None else None
        return {
            "a": {"name": a.name, "box": found[0][0]}, "b": {"name": b.name, "box": found[1][0]},
            "distance": round(d, 4), "probability": None if cal is None else round(float(cal.probability(d)), 4),
            "same": d <= thr, "threshold": round(thr, 4), "threshold_source": source,
        }  # fmt: skip

    def identify(self, up: Upload) -> list[FaceMatch]:
        """Every face of the upload -> the nearest person of the face index, or unknown (``label`` None)."""
        from visrec.faces import FaceMatch

        if self.gallery is None:
            raise NoFaceIndex(
                "identifying faces needs a face index: build one with `visrec faces index PEOPLE_DIR --out FACES` "
                "(one sub-folder of photos per person) and restart with `visrec serve INDEX --faces FACES`"
            )
        self.gallery.check_pipeline(self.pipeline())
        faces, vecs = self.find(up.pixels)
        thr, _ = self._identify_threshold()
        matches = self.gallery.match(vecs, thr) if len(faces) else []
        return [FaceMatch((*(float(x) for x in faces.xyxy[i]),), *m) for i, m in enumerate(matches)]  # type: ignore[arg-type]

    def identify_dict(self, up: Upload) -> dict[str, Any]:
        """:meth:`identify` as JSON: one entry per face (``xyxy``, ``label``, ``candidate``, ``distance``...)."""
        matches = self.identify(up)
        thr, source = self._identify_threshold()
        return {"query": up.name, "faces": [asdict(m) for m in matches], "threshold": thr, "threshold_source": source}

    def info(self) -> dict[str, Any]:
        """Whether faces work here, how to install them if not, and what the face index holds (with its open-set
        identification rule)."""
        from visrec.faces.ops import identification_summary

        g = self.gallery
        cal = g.calibration if g is not None else None
        return {
            "available": faces_missing() is None, "install": faces_missing(),
            "people": len(set(g.labels)) if g is not None else 0, "faces": len(g.rows) if g is not None else 0,
            "calibrated_threshold": None if cal is None else float(cal.threshold),
            "identification": identification_summary(cal),
        }  # fmt: skip
