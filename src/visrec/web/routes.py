"""REST routes for scene analysis, faces (verify, identify) and background clustering of a server folder."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import Depends, FastAPI, File, Form, Path, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from visrec.web.service import ENCODER_DRAFT, Service, Upload, UploadTooLarge

PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, "description": "A PNG image."}}


async def read_upload(service: Service, file: UploadFile, draft_size: int | None = ENCODER_DRAFT) -> Upload:
    """Read at most the upload limit + 1 byte of ``file`` and decode it (see :meth:`Service.decode`)."""
    limit = service.config.max_upload_bytes
    data = await file.read(limit + 1)  # never hold more than the limit + 1 byte
    if len(data) > limit:
        raise UploadTooLarge(f"{file.filename}: over the upload limit of {limit} bytes")
    return await run_in_threadpool(service.decode, file.filename or "upload", data, draft_size)


def image_slot(service: Service) -> Any:
    """A route dependency holding one of the service's image slots for the whole request (see
    :meth:`Service.image_slot`): concurrent image requests beyond ``max_concurrent`` wait their turn."""

    async def slot() -> AsyncIterator[None]:
        async with service.image_slot():
            yield

    return Depends(slot)


def png_bytes(image: Any) -> bytes:
    """A PIL image encoded as PNG."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class ClusterBody(BaseModel):
    """Cluster the images (or faces) of a folder on the server."""

    folder: str = Field(..., min_length=1, max_length=4096, description="Path of a folder on the server.")
    what: Literal["images", "faces"] = Field("images", description="Cluster whole images or every face in them.")
    method: Literal["spectral", "agglomerative", "hdbscan", "kmeans"] | None = Field(
        None,
        description="Default: spectral (automatic k) for images, agglomerative at the verification threshold "
        "for faces.",
    )
    k: int | None = Field(None, ge=1, le=1000, description="Number of clusters (default: automatic).")
    threshold: float | None = Field(None, gt=0, le=2, description="Agglomerative cosine distance instead of k.")


def add_routes(app: FastAPI, service: Service, guarded: list[Any]) -> None:
    """Add ``/api/scene``, ``/api/faces/*`` and ``/api/cluster*`` to ``app`` (all behind ``guarded``)."""
    heavy = [*guarded, image_slot(service)]

    async def scene_of(file: UploadFile, segmenter: str, mode: str, min_score: float, unknown: bool) -> Any:
        up = await read_upload(service, file, None)  # full size: boxes are in the uploaded file's pixels
        return up, await run_in_threadpool(service.scene, up, segmenter, mode, min_score, unknown)

    scene_form: dict[str, Any] = {
        "segmenter": Form("gallery", pattern="^(gallery|proposals|faces)$"),
        "mode": Form("knn", pattern="^(knn|prototype)$"),
        "min_score": Form(0.0, ge=0.0, le=1.0),
        "unknown": Form(False),
    }

    @app.post("/api/scene", dependencies=heavy)
    async def scene(
        file: UploadFile = File(...),
        segmenter: str = scene_form["segmenter"],
        mode: str = scene_form["mode"],
        min_score: float = scene_form["min_score"],
        unknown: bool = scene_form["unknown"],
    ) -> dict[str, Any]:
        """Every region of the scene recognised against the index: boxes (xyxy pixels), label, confidence."""
        up, res = await scene_of(file, segmenter, mode, min_score, unknown)
        return {"query": up.name, **res.to_dict()}

    @app.post("/api/scene/annotated", dependencies=heavy, response_class=Response, responses=PNG)
    async def scene_annotated(
        file: UploadFile = File(...),
        segmenter: str = scene_form["segmenter"],
        mode: str = scene_form["mode"],
        min_score: float = scene_form["min_score"],
        unknown: bool = scene_form["unknown"],
    ) -> Response:
        """The scene with every region drawn (box, label, confidence) as PNG."""
        from visrec.segment.draw import annotate

        up, res = await scene_of(file, segmenter, mode, min_score, unknown)
        return Response(png_bytes(annotate(up.pixels, res)), media_type="image/png")

    @app.get("/api/faces", dependencies=guarded)
    def faces_info() -> dict[str, Any]:
        """Whether faces work on this server (else how to install them) and what its face index holds."""
        face_index = service.config.faces
        return {**service.faces.info(), "index": str(face_index) if face_index else None}

    @app.post("/api/faces/verify", dependencies=heavy)
    async def faces_verify(a: UploadFile = File(...), b: UploadFile = File(...)) -> dict[str, Any]:
        """Same person? Largest face of each photo: distance, decision, threshold (and probability if calibrated)."""
        up_a = await read_upload(service, a, None)  # full size: boxes are in the uploaded file's pixels
        up_b = await read_upload(service, b, None)
        return await run_in_threadpool(service.faces.verify, up_a, up_b)

    @app.post("/api/faces/identify", dependencies=heavy)
    async def faces_identify(file: UploadFile = File(...)) -> dict[str, Any]:
        """Every face of the photo -> a person of the face index (``--faces``) or unknown (``label`` null)."""
        up = await read_upload(service, file, None)
        return await run_in_threadpool(service.faces.identify_dict, up)

    @app.post("/api/cluster", dependencies=guarded, status_code=202)
    def cluster_start(body: ClusterBody) -> dict[str, Any]:
        """Start clustering a server folder (under an ``--allow-root``) in the background; poll the returned job."""
        job = service.cluster_folder(body.folder, what=body.what, method=body.method, k=body.k,
                                     threshold=body.threshold)  # fmt: skip
        return job.to_dict(items=False)

    @app.get("/api/cluster/{job_id}", dependencies=guarded)
    def cluster_job(
        job_id: str = Path(..., max_length=32),
        wait: float = Query(0.0, ge=0.0, le=60.0, description="Seconds to wait for the job to finish."),
    ) -> dict[str, Any]:
        """The job's status and progress; when done, the item ids of every cluster (largest first)."""
        job = service.clusters.get(job_id)
        if wait:
            job.wait(wait)
        return job.to_dict()

    @app.get("/api/cluster/{job_id}/sheet/{name}", dependencies=guarded, response_class=Response, responses=PNG)
    def cluster_sheet(job_id: str = Path(..., max_length=32), name: str = Path(..., max_length=200)) -> Response:
        """A contact sheet (PNG) of one cluster of a finished job."""
        return Response(png_bytes(service.clusters.get(job_id).sheet(name)), media_type="image/png")
