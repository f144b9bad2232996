"""Thin web layer: a REST API (FastAPI) and a UI (Gradio) over one opened index. Binds 127.0.0.1 by default."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

from visrec.web.service import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD, ServeConfig, Service

__all__ = ["DEFAULT_MAX_CONCURRENT", "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_UPLOAD", "ServeConfig", "Service", "create_app"]


def create_app(config: ServeConfig, ui: bool = True) -> object:
    """The ASGI app: the API under ``/api`` (OpenAPI at ``/docs``) and, with ``ui``, the Gradio UI at ``/``.

    The UI gets a private folder for its uploads and results (made here and set as ``GRADIO_TEMP_DIR`` for this
    process) and :class:`visrec.web.guard.UiFileGuard` in front of it, so no request reads a file outside it.
    """
    from visrec.web.api import create_api

    service = Service(config)
    app = create_api(service)
    if ui:
        import gradio as gr

        from visrec.web.guard import UiFileGuard, private_ui_folder
        from visrec.web.ui import build_ui

        folder = private_ui_folder()  # before the UI is built: each component records its cache folder
        app = gr.mount_gradio_app(
            app, build_ui(service), path="/", max_file_size=config.max_upload_bytes, show_error=False,
            allowed_paths=[], blocked_paths=_blocked(config, folder), **_ui_auth(config.token),
        )  # fmt: skip
        app.add_middleware(UiFileGuard, folder=folder, max_body=config.max_upload_bytes, max_pixels=config.max_pixels)
    return app


def _blocked(config: ServeConfig, ui_folder: Path) -> list[str]:
    """Folders Gradio must never serve (its own check, behind :class:`UiFileGuard`): the index, the face index,
    the allowed roots and the working folder, unless the UI folder lies inside one."""
    folders = [config.index, *config.allow_roots, Path(os.getcwd())] + ([config.faces] if config.faces else [])
    resolved = [Path(f).resolve() for f in folders]
    return [str(f) for f in resolved if not ui_folder.is_relative_to(f)]


def _ui_auth(token: str | None) -> dict[str, Any]:
    """With a token, the UI asks for it too (as the password of its login form), like the API."""
    if token is None:
        return {}

    def check(_user: str, password: str) -> bool:
        return hmac.compare_digest(password.encode(), token.encode())

    return {"auth": check, "auth_message": "Enter the API token as the password (any user name)."}
