"""The REST API (FastAPI): search, classify, scene, faces, cluster, index info/add/delete, health.

JSON in and out, multipart uploads. Options of the search and classify endpoints go in the query string
(``/api/search/image?k=3``, ``/api/search/text?q=dog&k=3``); the body carries only the file.

Every error, ours or the framework's (validation, authentication, unknown route), is JSON ``{"error": message}``
with a 4xx status; a request never gets a 500 for bad input.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from visrec.errors import (
    BadImage,
    BadInput,
    IndexBusy,
    ManifestMismatch,
    MissingExtra,
    MissingWeights,
    NotCalibrated,
    VisrecError,
)
from visrec.web.faces import NoFaceIndex
from visrec.web.jobs import ClusterBusy, JobNotFound
from visrec.web.routes import add_routes, read_upload
from visrec.web.service import ReadOnly, Service, UploadTooLarge

_STATUS: list[tuple[type[Exception], int]] = [
    (UploadTooLarge, 413),
    (ReadOnly, 403),
    (JobNotFound, 404),
    (MissingExtra, 503),
    (MissingWeights, 503),
    (NoFaceIndex, 409),
    (ClusterBusy, 409),
    (IndexBusy, 423),
    (NotCalibrated, 409),
    (ManifestMismatch, 409),
    (BadImage, 415),
    (BadInput, 400),
    (VisrecError, 422),
]


def status_of(exc: Exception) -> int:
    """HTTP status for a visrec error."""
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            if isinstance(exc, BadImage) and exc.reason == "too-large":
                return 413
            return code
    return 500


def validation_message(errors: Any) -> str:
    """FastAPI's validation errors as one sentence: ``k (query): Input should be greater than or equal to 1``."""
    parts = []
    for e in errors:
        where, *name = [str(p) for p in e.get("loc", ())] or ["request"]
        parts.append(f"{'.'.join(name) or where} ({where}): {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def query_options_only(request: Request) -> None:
    """Refuse options sent as form fields where they belong in the query string (they would be ignored)."""
    form = await request.form()
    misplaced = sorted(k for k in form if k != "file")
    if misplaced:
        example = "&".join(f"{k}={form[k]}" for k in misplaced)
        raise BadInput(f"send {', '.join(misplaced)} in the query string ({request.url.path}?{example}), not the form")


class DeleteRequest(BaseModel):
    ids: list[str]


def create_api(service: Service) -> FastAPI:
    """The FastAPI app over ``service``; every ``/api`` route but ``/api/health`` needs the token when one is set."""
    app = FastAPI(
        title="visrec",
        version="0.1.0",
        description="Search, classify and analyse images against a visrec index; verify and identify faces; "
        "cluster a folder.",
    )

    @app.exception_handler(VisrecError)
    async def _visrec_error(_: Request, exc: VisrecError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=status_of(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_message(exc.errors())}, status_code=422)

    def auth(authorization: str | None = Header(default=None)) -> None:
        token = service.config.token
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong API token: send 'Authorization: Bearer <token>'")

    guarded = [Depends(auth)]

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "index": str(service.config.index), "count": service.index.store.count()}

    @app.get("/api/index", dependencies=guarded)
    def info() -> dict[str, Any]:
        return service.info()

    query_only = [*guarded, Depends(query_options_only)]

    @app.post("/api/search/image", dependencies=query_only)
    async def search_image(
        file: UploadFile = File(...), k: int = Query(10, ge=1, le=1000), where: str | None = None
    ) -> dict[str, Any]:
        up = await read_upload(service, file)
        return {"query": up.name, "hits": service.search_image(up, k, where or None)}

    @app.get("/api/search/text", dependencies=guarded)
    def search_text(
        q: str = Query(..., min_length=1, max_length=500),
        k: int = Query(10, ge=1, le=1000),
        where: str | None = None,
        route: str = Query("auto", pattern="^(auto|labels|joint)$"),
    ) -> dict[str, Any]:
        return service.search_text(q, k, where, route)

    @app.post("/api/classify", dependencies=query_only)
    async def classify(
        file: UploadFile = File(...),
        mode: str = Query("knn", pattern="^(knn|prototype|zeroshot|blend)$"),
        k: int | None = Query(None, ge=1, le=1000),
    ) -> dict[str, Any]:
        up = await read_upload(service, file)
        return {"query": up.name, **service.classify(up, mode, k)}

    @app.post("/api/index/add", dependencies=guarded)
    async def add(files: list[UploadFile] = File(...), label: str | None = Form(None)) -> dict[str, Any]:
        if len(files) > 100:
            raise BadInput(f"{len(files)} files in one request; send at most 100")
        ups = [await read_upload(service, f) for f in files]
        return service.add(ups, (label or "").strip() or None)

    @app.post("/api/index/delete", dependencies=guarded)
    def delete(req: DeleteRequest) -> dict[str, Any]:
        return service.delete(req.ids)

    add_routes(app, service, guarded)
    return app
