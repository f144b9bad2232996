"""The Gradio UI: Search, Classify, Scene, Faces, Cluster, Compare and Index tabs over the same :class:`Service` as
the HTTP API."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from visrec.data.readers import printable
from visrec.errors import VisrecError
from visrec.web.service import Service, Upload

THUMB = 192


def _thumb(service: Service, hit: dict[str, Any]) -> tuple[Any, str] | None:
    from PIL import Image

    from visrec.data import load_image
    from visrec.types import Hit

    path = service.index.file_of(Hit(hit["id"], hit["score"], hit["path"], tuple(hit["labels"])))
    if path is None:
        return None
    try:
        im = Image.fromarray(load_image(path, draft_size=THUMB))
    except VisrecError:
        return None
    im.thumbnail((THUMB, THUMB))
    return im, f"{'/'.join(hit['labels']) or '-'}  {hit['score']:.3f}"


def _gallery(service: Service, hits: list[dict[str, Any]]) -> list[tuple[Any, str]]:
    return [t for h in hits if (t := _thumb(service, h)) is not None]


def _upload(service: Service, image: np.ndarray | None) -> Upload:
    import io

    from PIL import Image

    if image is None:
        raise VisrecError("upload an image first")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return service.decode("upload.png", buf.getvalue())


def _shown(value: Any) -> Any:
    """A callback's outputs with every string printable: Gradio's JSON encoder refuses the surrogate escapes of
    file and folder names that are not UTF-8 (shown as U+FFFD instead)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_shown(v) for v in value)
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


def build_ui(service: Service) -> Any:
    """The ``gradio.Blocks`` app."""
    import gradio as gr

    from visrec.web.ui_tabs import cluster_tab, faces_tab, scene_tab

    def guard(fn: Any) -> Any:
        @functools.wraps(fn)  # Gradio reads the signature: a gr.Progress() default gets the progress bar
        def run(*args: Any) -> Any:
            try:
                return _shown(fn(*args))
            except VisrecError as e:
                raise gr.Error(printable(str(e))) from None

        return run

    def search(image: np.ndarray | None, text: str, k: float) -> tuple[list[Any], str]:
        if text and text.strip():
            res = service.search_text(text, int(k))
            how = f"route: {res['route']}" + (
                f" (label {', '.join(n for n, _ in res['matched_labels'])})" if res["matched_labels"] else ""
            )
            return _gallery(service, res["hits"]), how
        hits = service.search_image(_upload(service, image), int(k))
        return _gallery(service, hits), f"{len(hits)} nearest images"

    def classify(image: np.ndarray | None, mode: str) -> tuple[str, list[Any], str]:
        res = service.classify(_upload(service, image), mode)
        p = res["prediction"]
        why = f"{p['reason']}; " if p.get("reason") else ""
        answer = p["label"] if p["label"] is not None else f"unknown ({why}closest: {p['candidate']})"
        conf = "uncalibrated" if p["calibrated"] is None else f"confidence {p['calibrated']:.2f}"
        return f"{answer}", _gallery(service, res["nearest"]), f"{conf}; raw score {p['score']:.3f}"

    def counts() -> list[list[Any]]:
        info = service.info()
        return [[lab, n] for lab, n in info["labels"].items()] + [["(unlabeled)", info["unlabeled"]]]

    def add(files: list[str] | None, label: str) -> tuple[str, list[list[Any]]]:
        if not files:
            raise VisrecError("choose image files to add")
        ups = [service.decode(Path(f).name, Path(f).read_bytes()) for f in files]
        rep = service.add(ups, label.strip() or None)
        return f"added {rep['added']}, updated {rep['updated']}; {rep['count']} items", counts()

    def add_folder(folder: str, progress: Any = gr.Progress()) -> tuple[str, list[list[Any]]]:
        if not folder.strip():
            raise VisrecError("type the path of a folder on the server")
        rep = service.add_folder(folder.strip(), lambda d, n: progress((d, n), desc="indexing"))
        msg = f"added {rep['added']} images ({len(rep['skipped'])} skipped); {rep['count']} items"
        return msg, counts()

    def delete(ids: str) -> tuple[str, list[list[Any]]]:
        wanted = [i.strip() for i in ids.replace(",", "\n").splitlines() if i.strip()]
        if not wanted:
            raise VisrecError("type the ids to delete (one per line)")
        rep = service.delete(wanted)
        return f"removed {rep['removed']}; {rep['count']} items", counts()

    with gr.Blocks(title="visrec", delete_cache=(3600, 3600)) as ui:  # uploads and results kept for an hour
        gr.Markdown(f"# visrec\nIndex `{service.config.index}` — {service.index.store.count()} images")
        with gr.Tab("Search"):
            with gr.Row():
                s_img = gr.Image(label="query image", type="numpy", elem_id="search-image")
                with gr.Column():
                    s_txt = gr.Textbox(label="or text (a label name, or an everyday object)", elem_id="search-text")
                    s_k = gr.Slider(1, 50, value=10, step=1, label="k")
                    s_btn = gr.Button("Search", variant="primary", elem_id="search-button")
            s_info = gr.Markdown(elem_id="search-info")
            s_gal = gr.Gallery(label="results", columns=5, elem_id="search-results")
            s_btn.click(guard(search), [s_img, s_txt, s_k], [s_gal, s_info])
        with gr.Tab("Classify"):
            with gr.Row():
                c_img = gr.Image(label="image", type="numpy", elem_id="classify-image")
                with gr.Column():
                    c_mode = gr.Radio(["auto", "knn", "prototype", "linear"], value="auto", label="mode")
                    c_btn = gr.Button("Classify", variant="primary", elem_id="classify-button")
                    c_label = gr.Textbox(label="answer", elem_id="classify-answer")
                    c_conf = gr.Markdown(elem_id="classify-confidence")
            c_gal = gr.Gallery(label="nearest examples", columns=5)
            c_btn.click(guard(classify), [c_img, c_mode], [c_label, c_gal, c_conf])
        with gr.Tab("Scene"):
            scene_tab(service, guard)
        with gr.Tab("Faces"):
            faces_tab(service, guard)
        with gr.Tab("Cluster"):
            cluster_tab(service, guard)
        with gr.Tab("Compare"):
            report = service.config.report
            if report is not None and report.is_file():
                import html

                doc = html.escape(report.read_text(encoding="utf-8"))
                gr.HTML(f'<iframe srcdoc="{doc}" style="width:100%;height:900px;border:0"></iframe>')
            else:
                gr.Markdown(
                    "No comparison report. Make one with `visrec compare DATASET --out DIR` and restart with "
                    "`visrec serve INDEX --report DIR/report.html`."
                )
        with gr.Tab("Index"):
            table = gr.Dataframe(headers=["label", "images"], value=_shown(counts()), elem_id="index-counts")
            if service.config.writable:
                files = gr.File(file_count="multiple", label="add images", type="filepath")
                label = gr.Textbox(label="label of the added images")
                a_btn = gr.Button("Add")
                a_out = gr.Markdown()
                a_btn.click(guard(add), [files, label], [a_out, table])
                if service.config.allow_roots:
                    where = f"under {service.roots_text()}"
                    folder = gr.Textbox(label=f"or index a folder on the server {where} (folder per label)")
                    f_btn = gr.Button("Index folder")
                    f_btn.click(guard(add_folder), [folder], [a_out, table])
                del_ids = gr.Textbox(label="ids to delete (one per line)", lines=3)
                d_btn = gr.Button("Delete", variant="stop")
                d_btn.click(guard(delete), [del_ids], [a_out, table])
            else:
                gr.Markdown("Served read-only: restart with `--writable` to add or delete images.")
    return ui
