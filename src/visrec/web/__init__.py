"""Thin web layer: a REST API (FastAPI) and a UI (Gradio) over one opened index. Binds 127.0.0.1 by default."""

from __future__ import annotations

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

        app = gr.mount_gradio_app(app, build_ui(service), path="/")
    return app
