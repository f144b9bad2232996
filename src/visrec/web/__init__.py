"""Thin web layer: a REST API (FastAPI) and a UI (Gradio) over one opened index. Binds 127.0.0.1 by default."""

from __future__ import annotations

import hmac
from typing import Any

from visrec.web.service import DEFAULT_MAX_UPLOAD, ServeConfig, Service

__all__ = ["DEFAULT_MAX_UPLOAD", "ServeConfig", "Service", "create_app"]


def create_app(config: ServeConfig, ui: bool = True) -> object:
    """The ASGI app: the API under ``/api`` (OpenAPI at ``/docs``) and, with ``ui``, the Gradio UI at ``/``."""
    from visrec.web.api import create_api

    service = Service(config)
    app = create_api(service)
    if ui:
        import gradio as gr

        from visrec.web.ui import build_ui

        app = gr.mount_gradio_app(
            app, build_ui(service), path="/", max_file_size=config.max_upload_bytes, **_ui_auth(config.token)
        )
    return app


def _ui_auth(token: str | None) -> dict[str, Any]:
    """With a token, the UI asks for it too (as the password of its login form), like the API."""
    if token is None:
        return {}

    def check(_user: str, password: str) -> bool:
        return hmac.compare_digest(password.encode(), token.encode())

    return {"auth": check, "auth_message": "Enter the API token as the password (any user name)."}
