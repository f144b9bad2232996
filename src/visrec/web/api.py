"""The REST API (FastAPI): search, classify, scene, faces, cluster, index info/add/delete, health.

JSON in and out, multipart uploads. Options of the search and classify endpoints go in the query string
(``/api/search/image?k=3``, ``/api/search/text?q=dog&k=3``); the body carries only the file.
With a token, every route but ``/api/health`` needs ``Authorization: Bearer
<token>``; the docs (``/docs``, ``/redoc``, ``/openapi.json``, served from files installed with the package, so
they work offline) take it too, or the token as the password of the browser's login prompt.

Every error, ours or the framework's (validation, authentication, unknown route), is JSON ``{"error": message}``
with a 4xx status; a request never gets a 500 for bad input.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
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
    UnknownIds,
    VisrecError,
)
from visrec.web.faces import NoFaceIndex
from visrec.web.jobs import ClusterBusy, JobNotFound
from visrec.web.routes import add_routes, image_slot, read_upload
from visrec.web.service import ReadOnly, Service, UploadTooLarge

BEARER = HTTPBearer(auto_error=False, description="The token given to `visrec serve --token`.")
DOCS_ASSETS = "/docs-assets"

_STATUS: list[tuple[type[Exception], int]] = [
    (UploadTooLarge, 413),
    (ReadOnly, 403),
    (JobNotFound, 404),
    (UnknownIds, 404),
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


class _JSON(JSONResponse):
    """JSON that also carries names of files whose names are not UTF-8: their bytes' surrogate escapes are written
    as ``\\udcXX`` (an ASCII body that Python and JavaScript parse back to the same string) instead of failing."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


class _Route(APIRoute):
    """A route whose dict result goes to :class:`_JSON` as it is: pydantic's response serialization (inferred from
    the ``dict[str, Any]`` annotation, adding nothing to the schema) cannot hold those surrogate escapes."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **{**kwargs, "response_model": None})


class DeleteRequest(BaseModel):
    ids: list[str]


def create_api(service: Service) -> FastAPI:
    """The FastAPI app over ``service``; every ``/api`` route but ``/api/health`` needs the token when one is set."""
    app = FastAPI(
        title="visrec",
        version="0.1.0",
        description="Search, classify and analyse images against a visrec index; verify and identify faces; "
        "cluster a folder.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=_JSON,
    )
    app.router.route_class = _Route

    @app.exception_handler(VisrecError)
    async def _visrec_error(_: Request, exc: VisrecError) -> JSONResponse:
        extra = {"missing": exc.missing} if isinstance(exc, UnknownIds) else {}
        return _JSON({"error": str(exc), **extra}, status_code=status_of(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _JSON({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _JSON({"error": validation_message(exc.errors())}, status_code=422)

    def auth(request: Request, _: Any = Security(BEARER)) -> None:
        token = service.config.token
        if token is not None and not bearer_ok(request.headers.get("authorization"), token):
            raise HTTPException(401, "missing or wrong API token: send 'Authorization: Bearer <token>'")

    guarded = [Depends(auth)]
    heavy = [*guarded, image_slot(service)]
    add_docs(app, service.config.token)

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "index": str(service.config.index), "count": service.index.store.count()}

    @app.get("/api/index", dependencies=guarded)
    def info() -> dict[str, Any]:
        return service.info()

    query_only = [*heavy, Depends(query_options_only)]

    @app.post("/api/search/image", dependencies=query_only)
    async def search_image(
        file: UploadFile = File(...),
        k: int = Query(10, ge=1, le=1000),
        where: str | None = None,
        rerank: bool = Query(True, description="re-rank in the index's centred space (false: plain cosine)"),
    ) -> dict[str, Any]:
        up = await read_upload(service, file)
        return {"query": up.name, "hits": service.search_image(up, k, where or None, rerank)}

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
        mode: str = Query("auto", pattern="^(auto|knn|prototype|linear|zeroshot|blend)$"),
        k: int | None = Query(None, ge=1, le=1000),
    ) -> dict[str, Any]:
        up = await read_upload(service, file)
        return {"query": up.name, **service.classify(up, mode, k)}

    @app.post("/api/index/add", dependencies=heavy)
    async def add(files: list[UploadFile] = File(...), label: str | None = Form(None)) -> dict[str, Any]:
        if len(files) > 100:
            raise BadInput(f"{len(files)} files in one request; send at most 100")
        ups = [await read_upload(service, f) for f in files]
        return service.add(ups, (label or "").strip() or None)

    @app.post("/api/index/delete", dependencies=guarded)
    def delete(req: DeleteRequest) -> dict[str, Any]:
        """Delete the items with these ids, all or none: when any id is not in the index, nothing is deleted and
        the answer is 404 ``{"error": message, "missing": [every id not found]}``."""
        return service.delete(req.ids)

    add_routes(app, service, guarded)
    return app


def bearer_ok(header: str | None, token: str) -> bool:
    """True for exactly ``Bearer <token>`` (the scheme in any case, one space, nothing around the token)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def basic_ok(header: str | None, token: str) -> bool:
    """True for HTTP Basic credentials whose password is the token (any user name): the browser's login prompt."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(password.encode(), token.encode())


def add_docs(app: FastAPI, token: str | None) -> None:
    """``/docs`` (Swagger UI), ``/redoc`` and ``/openapi.json``, behind the token when one is set, with their
    scripts served from the ``fastapi-offline`` package's files under ``/docs-assets`` (no CDN)."""
    from importlib.resources import files
    from pathlib import Path

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    def docs_auth(request: Request) -> None:
        header = request.headers.get("authorization")
        if token is not None and not (bearer_ok(header, token) or basic_ok(header, token)):
            raise HTTPException(
                401, "the API docs need the token: as the password of the login prompt (any user name)",
                headers={"WWW-Authenticate": 'Basic realm="visrec API docs (password: the API token)"'},
            )  # fmt: skip

    try:
        assets = Path(str(files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        assets = None
    if assets is not None:
        app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    locked = [Depends(docs_auth)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=locked)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    def page(html: HTMLResponse) -> HTMLResponse:
        if assets is None:
            raise MissingExtra("fastapi-offline", "web", "the API docs page")
        return html

    @app.get("/docs", include_in_schema=False, dependencies=locked)
    def docs() -> HTMLResponse:
        return page(get_swagger_ui_html(
            openapi_url="/openapi.json", title="visrec API", swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        ))  # fmt: skip

    @app.get("/redoc", include_in_schema=False, dependencies=locked)
    def redoc() -> HTMLResponse:
        return page(get_redoc_html(
            openapi_url="/openapi.json", title="visrec API", redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False,
        ))  # fmt: skip
