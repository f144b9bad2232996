"""What the HTTP API and the UI share: an opened index, upload checks, and the calls they make.

Uploads are size-, type- and pixel-checked, decoded in memory with the same safe reader as files on disk (never
written to disk), and never fetched from URLs. Scene analysis and faces work on uploads only; clustering and indexing
a folder read folders on the server, allowed only under the roots named at start (``--allow-root``).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visrec.data import IMAGE_EXTENSIONS
from visrec.errors import BadImage, BadInput, VisrecError
from visrec.web.faces import FaceService

DEFAULT_MAX_UPLOAD = 10 * 2**20
DEFAULT_MAX_PIXELS = 40_000_000  # per uploaded image: ~120 MB of RGB while it is decoded
DEFAULT_MAX_CONCURRENT = 2  # image requests processed at once; the others wait their turn
SCENE_LONG_SIDE = 1024  # scene analysis shrinks to this anyway (SceneConfig.long_side)
FACE_DRAFT = 1280  # the dlib detector shrinks to this longer side before detecting
ENCODER_DRAFT = -1  # decode() default: draft JPEGs down to the encoder's input size


class UploadTooLarge(BadInput):
    """An upload is larger than the server accepts."""


class ReadOnly(VisrecError):
    """A write was asked of an index served read-only."""

    exit_code = 2


class FolderNotAllowed(ReadOnly):
    """A server folder outside the roots allowed at start (or any folder, when none was allowed)."""


@dataclass(frozen=True)
class Upload:
    """A decoded upload: RGB ``uint8`` pixels ``(h, w, 3)`` (maybe reduced, see :meth:`Service.decode`) and facts
    about the file (``width`` x ``height``: its full displayed size)."""

    name: str
    pixels: np.ndarray
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class ServeConfig:
    """How the server treats its index and uploads."""

    index: Path
    writable: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    token: str | None = None
    report: Path | None = None
    faces: Path | None = None
    allow_roots: tuple[Path, ...] = ()
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_concurrent: int = DEFAULT_MAX_CONCURRENT

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.max_concurrent < 1:
            raise BadInput(f"max_pixels and max_concurrent must be >= 1, got {self.max_pixels}, {self.max_concurrent}")


class Service:
    """One opened index shared by the API and the UI; reopened after each write."""

    def __init__(self, config: ServeConfig) -> None:
        from visrec.faces import FaceGallery
        from visrec.index import Index
        from visrec.web.jobs import ClusterJobs

        self.config = config
        self._lock = threading.Lock()
        self.index = Index(config.index)
        self.face_gallery = FaceGallery.load(config.faces) if config.faces is not None else None
        self._faces = FaceService(self.face_gallery)
        self.clusters = ClusterJobs(lambda: self.index.encoder, self._faces)
        self._roots = tuple(Path(r).resolve() for r in config.allow_roots)
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def image_slot(self) -> AsyncIterator[None]:
        """Hold one of the ``max_concurrent`` slots for image requests while a request decodes and uses its images
        (the others wait), so N concurrent requests cost at most ``max_concurrent`` requests' memory."""
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.config.max_concurrent))
        async with slots:
            yield

    def folder(self, folder: str | Path) -> Path:
        """``folder`` with symlinks resolved, if it lies under a root allowed at start; else ``FolderNotAllowed``."""
        if not self._roots:
            raise FolderNotAllowed(
                "folders on the server are off: restart with visrec serve ... --allow-root DIR (the folders that "
                "clustering and indexing may read)"
            )
        resolved = Path(folder).expanduser().resolve()
        if not any(resolved.is_relative_to(r) for r in self._roots):
            raise FolderNotAllowed(
                f"{folder}: outside the folders this server may read; give a folder under {self.roots_text()}"
            )
        return resolved

    def allowed(self, path: Path) -> bool:
        """True when ``path`` (symlinks resolved) lies under an allowed root."""
        return any(path.resolve().is_relative_to(r) for r in self._roots)

    def roots_text(self) -> str:
        return ", ".join(str(r) for r in self._roots) or "(none)"

    def decode(self, name: str, data: bytes, draft_size: int | None = ENCODER_DRAFT) -> Upload:
        """Check and decode uploaded bytes in memory; raises ``UploadTooLarge`` or ``BadImage`` naming the file
        (its own base name, never a server path). Images over ``max_pixels`` are refused from their header.

        ``draft_size``: the image is decoded (JPEG draft mode) or reduced (other formats, by an integer factor)
        keeping both sides >= this (default: the encoder's input size; None: full size).
        """
        from visrec.data.images import decode_bytes

        name = Path(name).name or "upload"
        limit = self.config.max_upload_bytes
        if len(data) > limit:
            raise UploadTooLarge(f"{name}: {len(data)} bytes is over the upload limit of {limit} bytes")
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_EXTENSIONS:
            allowed = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise BadInput(f"{name}: not an accepted image type; send one of {allowed}")
        draft = self.index.encoder.input_size if draft_size == ENCODER_DRAFT else draft_size
        decoded = decode_bytes(data, name, draft_size=draft, max_pixels=self.config.max_pixels)
        image = decoded.image
        if draft is not None and (factor := min(image.size) // draft) >= 2:
            image = image.reduce(factor)  # what JPEG draft mode does for the other formats
        return Upload(name, np.array(image, dtype=np.uint8), hashlib.sha256(data).hexdigest(), decoded.width,
                      decoded.height)  # fmt: skip

    def search_image(
        self, up: Upload, k: int = 10, where: str | None = None, rerank: bool = True
    ) -> list[dict[str, Any]]:
        """Image -> image hits (``rerank``: see :meth:`visrec.index.reader.Index.search_vectors`)."""
        return [h.to_dict() for h in self.index.search_images([up.pixels], k, where, rerank)[0]]

    def search_text(self, query: str, k: int = 10, where: str | None = None, route: str = "auto") -> dict[str, Any]:
        if not query.strip():
            raise BadInput("the text query is empty")
        return self.index.search_text(query, k, where, route).to_dict()

    def classify(self, up: Upload, mode: str = "auto", k: int | None = None, neighbours: int = 5) -> dict[str, Any]:
        """Prediction plus the nearest indexed examples (``mode`` "auto": linear where the index has a head)."""
        idx = self.index
        mode = idx.resolve_mode(mode, k)
        emb = idx.encode([up.pixels])
        calibrated = mode in idx.calibration_data()
        pred = idx.classify(emb, mode, k, calibrated)[0]
        near = idx.search_vectors(emb.vectors, neighbours)[0]
        return {"prediction": pred.to_dict(), "calibrated": calibrated, "nearest": [h.to_dict() for h in near]}

    def info(self) -> dict[str, Any]:
        """The index's summary, with the inference runtime this server runs its encoder on."""
        info = self.index.info()
        info["encoder"] = info["encoder"] | {"runtime": getattr(self.index.encoder, "runtime", "onnxruntime")}
        return info

    def scene(
        self, up: Upload, segmenter: str = "gallery", mode: str = "knn", min_score: float = 0.0, unknown: bool = False
    ) -> Any:
        """Every region of the uploaded scene recognised against the index: a ``SceneResult`` in the upload's
        pixels (decode it with ``draft_size=None`` for boxes in the file's pixels). ``segmenter``: gallery |
        proposals | faces (face detector first)."""
        from visrec.segment import create_segmenter
        from visrec.segment.scene import SceneAnalyzer, SceneConfig

        if segmenter not in ("gallery", "proposals", "faces"):
            raise BadInput(f"unknown segmenter {segmenter!r}; use gallery, proposals or faces")
        idx = self.index
        seg = create_segmenter("gallery", index=idx) if segmenter == "gallery" else create_segmenter(segmenter)
        cfg = SceneConfig(long_side=SCENE_LONG_SIDE, mode=mode, min_score=min_score, keep_unknown=unknown)
        return SceneAnalyzer(idx, seg, cfg).analyze(up.pixels)

    @property
    def faces(self) -> FaceService:
        """Verify and identify faces in uploads (the ``faces`` extra)."""
        return self._faces

    def cluster_folder(self, folder: str | Path, **options: Any) -> Any:
        """Start clustering the images (or faces) of a folder on this machine in the background; returns the job.

        Only folders under the roots allowed at start (``allow_roots``) can be read; files that resolve outside
        them (symlinks) are skipped.
        """
        from visrec.web.jobs import ClusterRequest

        request = ClusterRequest(self.folder(folder), **options, allowed=self.allowed)
        if request.what == "faces":
            self._faces.pipeline()  # a missing faces extra fails the request, not the job
        return self.clusters.start(request)

    def add(self, uploads: list[Upload], label: str | None) -> dict[str, Any]:
        """Add uploaded images (optionally labeled) to the index."""
        from visrec.data import image_hash
        from visrec.index.edit import edit_index, upload_metadata

        self._require_writable()
        ids = [f"upload/{u.sha256[:16]}" for u in uploads]
        emb = self.index.encoder.encode_images([u.pixels for u in uploads], ids=ids)
        metas = [
            upload_metadata(
                u.name, [label] if label else [], u.sha256, u.width, u.height, image_hash(u.pixels).tobytes().hex()
            )
            for u in uploads
        ]
        return self._write(lambda: edit_index(self.config.index, add=emb, metadata=metas))

    def add_folder(self, folder: str | Path, progress: Any = None, batch: int = 64) -> dict[str, Any]:
        """Add every image of a dataset folder on this machine (labels from its layout), batch by batch.

        ``progress(done, total)`` is called after each batch. Existing items are kept; the folder's images get ids
        ``<folder name>/<relative path>`` and their absolute path, so the UI can show them. Only folders under the
        allowed roots can be read; files resolving outside them (symlinks) are skipped as ``outside-allowed-roots``.
        """
        from visrec.data import image_hash, load_dataset, load_image
        from visrec.index.edit import edit_index

        self._require_writable()
        root = self.folder(folder)
        ds = load_dataset(root)
        enc = self.index.encoder
        skipped: list[list[str]] = []
        added = 0
        for start in range(0, len(ds), batch):
            arrays, ids, metas = [], [], []
            for r in ds.records[start : start + batch]:
                path = ds.abspath(r).resolve()
                if not self.allowed(path):
                    skipped.append([str(path), "outside-allowed-roots"])
                    continue
                try:
                    arr = load_image(path, draft_size=enc.input_size, max_pixels=self.config.max_pixels)
                except BadImage as bad:
                    skipped.append([str(path), bad.reason])
                    continue
                arrays.append(arr)
                ids.append(f"{root.name}/{r.id}")
                h, w = arr.shape[:2]
                metas.append({"path": str(path), "labels": list(r.labels), "split": r.split, "sha256": "",
                              "width": w, "height": h, "group": None,
                              "extra": {"phash": image_hash(arr).tobytes().hex()}})  # fmt: skip
            if arrays:
                emb = enc.encode_images(arrays, ids=ids)
                rep = self._write(lambda e=emb, m=metas: edit_index(self.config.index, add=e, metadata=m))
                added += int(rep["added"]) + int(rep["updated"])
            if progress is not None:
                progress(min(start + batch, len(ds)), len(ds))
        return {"added": added, "skipped": skipped, "count": self.index.store.count()}

    def delete(self, ids: list[str]) -> dict[str, Any]:
        """Delete items by id, all or none: when any id is not in the index, nothing is deleted and
        :class:`~visrec.errors.UnknownIds` names every missing id (the API answers 404)."""
        from visrec.index.edit import edit_index

        self._require_writable()
        return self._write(lambda: edit_index(self.config.index, delete=ids, missing_ok=False))

    def _require_writable(self) -> None:
        if not self.config.writable:
            raise ReadOnly(f"{self.config.index} is served read-only; restart with: visrec serve ... --writable")

    def _write(self, fn: Any) -> dict[str, Any]:
        from visrec.index import Index

        with self._lock:
            report = fn()
            self.index = Index(self.config.index, encoder=self.index.encoder)
        return dict(report.to_dict())
