"""Clustering a folder on the server in the background: one job at a time, progress, clusters to browse.

A job embeds every image under the folder (whole images with the served index's encoder, or every face with the
dlib pipeline), clusters them with :func:`visrec.cluster.run.finish`, and keeps the result in memory; nothing is
written to disk. Jobs are kept (the last few) so the UI and the API can browse them after they finish.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.errors import BadImage, BadInput, EmptyDataset, VisrecError

if TYPE_CHECKING:
    from visrec.web.faces import FaceService

THUMB = 160
WHAT = ("images", "faces")


class ClusterBusy(VisrecError):
    """A clustering job is already running."""

    exit_code = 4


class JobNotFound(BadInput):
    """No clustering job has this id."""


@dataclass(frozen=True)
class ClusterRequest:
    """``folder``: a folder on the server (recursive); ``what``: images | faces; ``method``: spectral |
    agglomerative | hdbscan | kmeans (None: spectral for images, agglomerative for faces or with a threshold);
    ``k``: clusters (None: automatic); ``threshold``: agglomerative cosine distance; ``allowed``: which files may
    be read (symlinks resolved); the others are skipped as ``outside-allowed-roots``."""

    folder: Path
    what: str = "images"
    method: str | None = None
    k: int | None = None
    threshold: float | None = None
    allowed: Callable[[Path], bool] | None = None

    def __post_init__(self) -> None:
        from visrec.cluster import ClusterConfig

        if self.what not in WHAT:
            raise BadInput(f"cannot cluster {self.what!r}; use images or faces")
        ClusterConfig(method=self.chosen_method, k=self.k, distance_threshold=self.threshold)  # validates them
        if not self.folder.is_dir():
            raise BadInput(f"{self.folder}: not a folder on the server; give the path of a folder of images")

    @property
    def chosen_method(self) -> str:
        """``method``, or the default for what is clustered."""
        if self.method:
            return self.method
        return "agglomerative" if self.what == "faces" or self.threshold is not None else "spectral"


class ClusterJob:
    """One run: ``status`` running | done | failed, ``done``/``total`` items embedded, the clusters when done."""

    def __init__(self, job_id: str, request: ClusterRequest) -> None:
        self.id, self.request = job_id, request
        self.status, self.stage, self.error = "running", "listing", ""
        self.done = self.total = 0
        self.skipped: list[list[str]] = []
        self.result: Any = None  # visrec.cluster.Clustering
        self.started, self.seconds = time.time(), 0.0
        self._thumbs: dict[str, np.ndarray] = {}
        self._finished = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the job to end; True when it has."""
        return self._finished.wait(timeout)

    def clusters(self) -> dict[str, list[str]]:
        """Cluster name -> item ids, largest first ({} until done)."""
        return {} if self.result is None else dict(self.result.clusters())

    def thumb(self, item: str) -> np.ndarray:
        """An RGB uint8 thumbnail of an item (a face crop, or the image under the folder)."""
        from visrec.data import load_image

        if item in self._thumbs:
            return self._thumbs[item]
        if self.request.what != "images" or item not in (self.result.assignment if self.result else {}):
            raise JobNotFound(f"job {self.id} has no item {item!r}")
        path = self.request.folder / item
        if self.request.allowed is not None and not self.request.allowed(path):  # a symlink changed since
            raise JobNotFound(f"job {self.id}: item {item!r} now lies outside the allowed folders")
        return load_image(path, draft_size=THUMB)

    def sheet(self, name: str) -> Any:
        """A PIL contact sheet of a cluster (up to 48 items)."""
        from visrec.cluster import contact_sheet

        items = self.clusters().get(name)
        if items is None:
            raise JobNotFound(f"job {self.id} has no cluster {name!r}; clusters: {', '.join(self.clusters())}")
        return contact_sheet([self.thumb(i) for i in items[:48]])

    def to_dict(self, items: bool = True) -> dict[str, Any]:
        """JSON status; with ``items`` the item ids of every cluster, else their sizes."""
        cl = self.clusters()
        out: dict[str, Any] = {
            "job": self.id, "status": self.status, "stage": self.stage, "done": self.done, "total": self.total,
            "folder": str(self.request.folder), "what": self.request.what, "method": self.request.chosen_method,
            "error": self.error or None, "skipped": self.skipped, "seconds": round(self.seconds, 2),
            "sizes": {k: len(v) for k, v in cl.items()},
        }  # fmt: skip
        if self.result is not None:
            out["quality_vs_folders"] = self.result.info.get("quality_vs_folders")
        if items:
            out["clusters"] = cl
        return out

    def run(self, encoder: Callable[[], Any], faces: FaceService) -> None:
        """Embed, cluster, record; any error ends the job as failed with its message (never silently)."""
        try:
            self._run(encoder, faces)
            self.status = "done"
        except VisrecError as e:
            self.status, self.error = "failed", str(e)
        except Exception as e:  # a background thread has no caller: the failure is recorded for the UI and API
            self.status, self.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            self.stage, self.seconds = "finished", time.time() - self.started
            self._finished.set()

    def _run(self, encoder: Callable[[], Any], faces: FaceService) -> None:
        from visrec.cluster.algorithms import FACES_MIN_SIZE, ClusterConfig
        from visrec.cluster.run import finish, image_files

        req = self.request
        files = image_files(req.folder)
        if req.allowed is not None:
            inside = [f for f in files if req.allowed(f)]
            self.skipped += [[str(f), "outside-allowed-roots"] for f in files if f not in set(inside)]
            files = inside
        self.total, self.stage = len(files), "embedding"
        if req.what == "faces":
            pipe = faces.pipeline()
            ids, vecs = self._embed_faces(files, faces)
            info: dict[str, Any] = {"faces": pipe.describe()}
            threshold = req.threshold
            if threshold is None and req.k is None and req.chosen_method == "agglomerative":
                threshold = pipe.default_threshold
        else:
            enc = encoder()
            ids, vecs = self._embed_images(files, enc)
            info, threshold = {"encoder": enc.describe()}, req.threshold
        if not ids:
            raise EmptyDataset(f"{req.folder}: no {'face' if req.what == 'faces' else 'readable image'} to cluster")
        self.stage = "clustering"
        min_size = FACES_MIN_SIZE if req.what == "faces" else 1
        cfg = ClusterConfig(method=req.chosen_method, k=req.k, distance_threshold=threshold, min_size=min_size)
        self.result, _ = finish(ids, vecs, cfg, info | {"root": str(req.folder)}, None)

    def _embed_images(self, files: list[Path], enc: Any, batch: int = 32) -> tuple[list[str], np.ndarray]:
        from visrec.data import load_image

        ids: list[str] = []
        vecs: list[np.ndarray] = []
        for start in range(0, len(files), batch):
            arrays, names = [], []
            for f in files[start : start + batch]:
                try:
                    arrays.append(load_image(f, draft_size=enc.input_size))
                    names.append(f.relative_to(self.request.folder).as_posix())
                except BadImage as bad:
                    self.skipped.append([str(f), bad.reason])
            if arrays:
                vecs.append(enc.encode_images(arrays, ids=names).vectors)
                ids += names
            self.done = min(start + batch, len(files))
        return ids, (np.concatenate(vecs) if vecs else np.zeros((0, 1), np.float32))

    def _embed_faces(self, files: list[Path], faces: FaceService) -> tuple[list[str], np.ndarray]:
        from PIL import Image

        from visrec.data import load_image
        from visrec.web.service import FACE_DRAFT

        ids: list[str] = []
        vecs: list[np.ndarray] = []
        for f in files:
            try:
                image = load_image(f, draft_size=FACE_DRAFT)
            except BadImage as bad:
                self.skipped.append([str(f), bad.reason])
                continue
            found, v = faces.find(image)
            for i in range(len(found)):
                item = f"{f.relative_to(self.request.folder).as_posix()}#{i}"
                x0, y0, x1, y1 = (int(max(0, round(float(c)))) for c in found.xyxy[i])
                face = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
                face.thumbnail((THUMB, THUMB))
                ids.append(item)
                vecs.append(v[i])
                self._thumbs[item] = np.asarray(face)
            self.done += 1
        return ids, np.array(vecs, np.float32)


class ClusterJobs:
    """The server's clustering jobs: ``start`` one at a time in a daemon thread, ``get`` by id, keep ``keep``."""

    def __init__(self, encoder: Callable[[], Any], faces: FaceService, keep: int = 8) -> None:
        self._encoder, self._faces, self._keep = encoder, faces, keep
        self._jobs: dict[str, ClusterJob] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def start(self, request: ClusterRequest) -> ClusterJob:
        """Start a job; raises ``ClusterBusy`` while another runs."""
        with self._lock:
            running = [j for j in self._jobs.values() if j.status == "running"]
            if running:
                raise ClusterBusy(f"clustering job {running[0].id} is still running; wait for it to finish")
            job = ClusterJob(f"c{next(self._ids)}", request)
            self._jobs[job.id] = job
            for old in list(self._jobs)[: -self._keep]:
                del self._jobs[old]
        threading.Thread(target=job.run, args=(self._encoder, self._faces), daemon=True).start()
        return job

    def get(self, job_id: str) -> ClusterJob:
        """The job with this id; raises ``JobNotFound``."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no clustering job {job_id!r}; known: {', '.join(self._jobs) or 'none'}")
        return job

    def latest(self) -> ClusterJob | None:
        """The most recently started job, if any."""
        return next(reversed(self._jobs.values()), None)
