"""Keep the Gradio UI from reading files it did not write: a private folder and a filter in front of Gradio.

Gradio reads files by path in two ways: the ``file=`` routes serve a file named in the URL, and ``FileData`` objects
(``{"path": ..., "meta": {"_type": "gradio.FileData"}}``) in the JSON bodies of its event routes are copied into its
cache before an event runs. Its own allow-list check is skipped for an app mounted with ``gr.mount_gradio_app``
(it returns early until ``launch()`` has run), so :class:`UiFileGuard` checks every request itself, the same way
whatever Gradio version is installed:

- ``file=`` paths (and the older ``file/`` route) must lie in the server's own UI folder (symlinks resolved);
  ``proxy=`` routes and URLs are refused (the server never fetches what a client names);
- a request body is either a file upload (``multipart/form-data``, only to Gradio's ``upload`` route), the login
  form, or JSON in which every object with a ``path`` (or a ``file=`` ``url``) names a file in that folder; image
  files named there must also fit the pixel budget (read from their header);
- websockets are refused (the UI uses none).

The UI folder is made fresh for each app (``mkdtemp``, mode 700) and given to Gradio as ``GRADIO_TEMP_DIR``, so
only this server's uploads and results are in it, never those of other Gradio apps on the machine.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from visrec.data import IMAGE_EXTENSIONS
from visrec.errors import BadImage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_FILE_ROUTE = re.compile(r"/file=(.*)$|(?:^|/gradio_api)/file/(.*)$", re.DOTALL)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
_PREFIX = "visrec-ui-"


def private_ui_folder() -> Path:
    """A new private folder (mode 700, removed at exit) for the UI's uploads and results, set as Gradio's
    ``GRADIO_TEMP_DIR`` (a folder the user set there is kept as its parent)."""
    base = os.environ.get("GRADIO_TEMP_DIR") or None
    if base is not None and Path(base).name.startswith(_PREFIX):  # set by an earlier app of this process
        base = str(Path(base).parent)
    if base is not None:
        Path(base).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=base)).resolve()
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def file_references(body: Any) -> Iterator[str]:
    """Every file path a JSON body names: the ``path`` of any object that has one, and what follows ``file=`` in
    any object's ``url``."""
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path, url = item.get("path"), item.get("url")
            if path is not None:
                yield path if isinstance(path, str) else repr(path)
            if isinstance(url, str) and "/file=" in url:
                yield unquote(url.split("/file=", 1)[1].split("?", 1)[0])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class UiFileGuard:
    """ASGI middleware: requests outside ``passthrough`` (the JSON API) may name files only inside ``folder``.

    ``max_body``: largest JSON body accepted (bytes); ``max_pixels``: largest image a body may name.
    """

    def __init__(
        self, app: ASGIApp, folder: Path, max_body: int, max_pixels: int, passthrough: tuple[str, ...] = ("/api/",)
    ) -> None:
        self.app, self.folder = app, folder.resolve()
        self.max_body, self.max_pixels, self.passthrough = max_body, max_pixels, passthrough

    def inside(self, ref: str) -> bool:
        """True when ``ref`` is a local path (not a URL) that lies in the UI folder once symlinks are resolved."""
        if not ref or "\x00" in ref or _URL.match(ref):
            return False
        try:
            return Path(os.path.abspath(ref)).resolve().is_relative_to(self.folder)
        except (OSError, ValueError, RuntimeError):
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = re.sub("/+", "/", str(scope.get("path", "")))
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        outside_ui = path.startswith(self.passthrough) and "/.." not in path
        if scope["type"] == "websocket" and not outside_ui:
            await send({"type": "websocket.close", "code": 1008})
            return
        refused = self._route_refusal(path)  # on every route: no API route names files in its URL either
        if refused is None and not outside_ui and scope.get("method") in ("POST", "PUT", "PATCH"):
            refused, receive = await self._body_refusal(scope, receive, path)
        if refused is not None:
            await _json(send, *refused)
            return
        await self.app(scope, receive, send)

    def _route_refusal(self, path: str) -> tuple[int, str] | None:
        if "/proxy=" in path:
            return 403, "this server does not fetch other servers' files"
        m = _FILE_ROUTE.search(path)
        if m is not None and not self.inside(m.group(1) if m.group(1) is not None else m.group(2)):
            return 403, "file not found among this server's uploads and results"
        return None

    async def _body_refusal(self, scope: Scope, receive: Receive, path: str) -> tuple[tuple[int, str] | None, Receive]:
        ctype = _header(scope, b"content-type").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            ok = path.rstrip("/").endswith("/upload")
            return (None if ok else (400, "file uploads go to the upload route only")), receive
        if ctype == "application/x-www-form-urlencoded":
            ok = path.rstrip("/").endswith("/login")
            return (None if ok else (400, "send JSON")), receive
        body = await _read_body(receive, self.max_body)
        if body is None:
            return (413, f"request body over {self.max_body} bytes"), receive
        replay = _replay(body, receive)
        if not body.strip():
            return None, replay
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return (400, "the request body is not JSON"), replay
        for ref in file_references(data):
            if not self.inside(ref):
                return (403, "a file of the request is not among this server's uploads and results"), replay
            too_big = self._pixel_refusal(Path(ref))
            if too_big is not None:
                return (413, too_big), replay
        return None, replay

    def _pixel_refusal(self, path: Path) -> str | None:
        """Why the image at ``path`` (in the UI folder) is refused, from its header only; None when it fits."""
        from visrec.data.images import header_size

        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            return None
        try:
            header_size(path.read_bytes(), path.name, max_pixels=self.max_pixels)
        except BadImage as bad:
            return str(bad) if bad.reason == "too-large" else None  # other faults: the decoder names them
        return None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then passes on the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _json(send: Send, status: int, message: str) -> None:
    payload = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
