"""The Scene, Faces and Cluster tabs of the Gradio UI (built inside the caller's ``gr.Blocks``)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from visrec.errors import VisrecError
from visrec.web.service import FACE_DRAFT, SCENE_LONG_SIDE, Service, Upload

Guard = Callable[[Callable[..., Any]], Callable[..., Any]]
PER_CLUSTER = 48


def upload_of(service: Service, image: np.ndarray | None, max_side: int, name: str = "upload.png") -> Upload:
    """An image from a Gradio component through the same checks as an API upload, first shrunk so its longer
    side is at most ``max_side`` (the analysis shrinks to that anyway; it keeps the PNG under the upload limit)."""
    from PIL import Image

    if image is None:
        raise VisrecError("upload an image first")
    im = Image.fromarray(image).convert("RGB")
    im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return service.decode(name, buf.getvalue(), None)


def draw_boxes(pixels: np.ndarray, boxes: list[tuple[list[float], str, tuple[int, int, int]]]) -> Any:
    """A PIL copy of RGB ``pixels`` with each ``(xyxy box, caption, colour)`` drawn."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.fromarray(pixels).copy()
    pen = ImageDraw.Draw(im)
    width = max(2, max(im.size) // 250)
    font = ImageFont.load_default(size=max(12, max(im.size) // 24))
    for box, caption, colour in boxes:
        x0, y0, x1, y1 = box
        pen.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        tb = pen.textbbox((x0, y0), caption, font=font)
        ty = max(0.0, y0 - (tb[3] - tb[1]) - 2 * width)
        pen.rectangle((x0, ty, x0 + (tb[2] - tb[0]) + 2 * width, ty + (tb[3] - tb[1]) + 2 * width), fill=colour)
        pen.text((x0 + width, ty + width - (tb[1] - y0)), caption, fill=(255, 255, 255), font=font)
    return im


def scene_view(
    service: Service, image: np.ndarray | None, segmenter: str, min_score: float, unknown: bool
) -> tuple[Any, list[list[Any]], str]:
    """The scene with its regions drawn, one table row per region, and a one-line summary."""
    from visrec.segment.draw import annotate

    up = upload_of(service, image, SCENE_LONG_SIDE, "scene.png")
    res = service.scene(up, segmenter, "knn", float(min_score), bool(unknown))
    rows = [
        [r["label"] or "unknown", r["score"], r["candidate"], *(round(v) for v in r["box"])]
        for r in res.to_dict()["regions"]
    ]
    info = f"{len(res)} region(s) in {res.width}x{res.height} px, {sum(res.timings.values()):.2f} s"
    return annotate(up.pixels, res), rows, info


def scene_tab(service: Service, guard: Guard) -> None:
    """Upload a scene -> the annotated image and a table of the recognised regions."""
    import gradio as gr

    gr.Markdown("Find every region of a scene and recognise it against the index (boxes in image pixels).")
    with gr.Row():
        img = gr.Image(label="scene", type="numpy", elem_id="scene-image")
        with gr.Column():
            seg = gr.Radio(["gallery", "proposals", "faces"], value="gallery", label="regions from")
            min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="minimum confidence")
            unknown = gr.Checkbox(False, label="also show unknown regions")
            btn = gr.Button("Analyse", variant="primary", elem_id="scene-button")
            info = gr.Markdown(elem_id="scene-info")
    with gr.Row():
        out = gr.Image(label="regions", type="pil", elem_id="scene-annotated", interactive=False)
        table = gr.Dataframe(
            headers=["label", "confidence", "nearest class", "x0", "y0", "x1", "y1"], elem_id="scene-regions"
        )
    btn.click(guard(lambda *a: scene_view(service, *a)), [img, seg, min_score, unknown], [out, table, info])


GREEN, RED = (0, 160, 0), (210, 0, 0)


def verify_view(service: Service, a: np.ndarray | None, b: np.ndarray | None) -> tuple[Any, ...]:
    """The verdict as Markdown and both photos with the compared face boxed."""
    ups = [upload_of(service, x, FACE_DRAFT, n) for x, n in ((a, "a.png"), (b, "b.png"))]
    r = service.faces.verify(ups[0], ups[1])
    verdict = "same person" if r["same"] else "different people"
    prob = "" if r["probability"] is None else f", probability {r['probability']:.2f}"
    text = (
        f"**{verdict}**: distance {r['distance']:.3f} {'≤' if r['same'] else '>'} threshold "
        f"{r['threshold']:.3f} ({r['threshold_source']}){prob}"
    )
    colour = GREEN if r["same"] else RED
    return text, *(draw_boxes(u.pixels, [(r[k]["box"], k.upper(), colour)]) for u, k in zip(ups, "ab", strict=True))


def identify_view(service: Service, image: np.ndarray | None) -> tuple[Any, list[list[Any]]]:
    """The photo with every face boxed and named (or unknown), and one table row per face."""
    up = upload_of(service, image, FACE_DRAFT, "photo.png")
    matches = service.faces.identify(up)
    boxes = [(list(m.xyxy), f"{m.label or 'unknown'} {m.distance:.2f}", GREEN if m.label else RED) for m in matches]
    rows = [[m.label or "unknown", m.candidate, round(m.distance, 3), *(round(v) for v in m.xyxy)] for m in matches]
    return draw_boxes(up.pixels, boxes), rows


def faces_tab(service: Service, guard: Guard) -> None:
    """Verify two photos (same person?) and identify every face of one photo against the face index."""
    import gradio as gr

    from visrec.web.faces import faces_missing

    missing = faces_missing()
    if missing:
        gr.Markdown(f"**Faces are not available on this server.** {missing}", elem_id="faces-missing")
    gr.Markdown("### Verify: are two photos the same person? (largest face of each)")
    with gr.Row():
        a = gr.Image(label="photo A", type="numpy", height=300, elem_id="faces-a")
        b = gr.Image(label="photo B", type="numpy", height=300, elem_id="faces-b")
    v_btn = gr.Button("Verify", variant="primary", elem_id="faces-verify-button")
    verdict = gr.Markdown(elem_id="faces-verdict")
    with gr.Row():
        a_out = gr.Image(label="face compared in A", type="pil", interactive=False, height=300, elem_id="faces-a-out")
        b_out = gr.Image(label="face compared in B", type="pil", interactive=False, height=300, elem_id="faces-b-out")
    v_btn.click(guard(lambda x, y: verify_view(service, x, y)), [a, b], [verdict, a_out, b_out])
    gr.Markdown("### Identify: who is in this photo?")
    if service.face_gallery is None:
        gr.Markdown(
            "No face index: build one with `visrec faces index PEOPLE_DIR --out FACES` (one sub-folder of photos "
            "per person) and restart with `visrec serve INDEX --faces FACES`."
        )
        return
    people = len(set(service.face_gallery.labels))
    gr.Markdown(f"Face index `{service.config.faces}`: {len(service.face_gallery.rows)} faces of {people} people.")
    with gr.Row():
        i_img = gr.Image(label="photo", type="numpy", height=360, elem_id="faces-identify-image")
        i_out = gr.Image(label="faces found", type="pil", interactive=False, height=360, elem_id="faces-identified")
    i_btn = gr.Button("Identify", elem_id="faces-identify-button")
    i_table = gr.Dataframe(
        headers=["person", "nearest", "distance", "x0", "y0", "x1", "y1"], elem_id="faces-identify-table"
    )
    i_btn.click(guard(lambda x: identify_view(service, x)), [i_img], [i_out, i_table])


def job_summary(job: Any) -> str:
    """One line about a clustering job: progress, its failure, or the clusters and their quality."""
    if job.status == "running":
        return f"job {job.id}: {job.stage} {job.done}/{job.total}"
    if job.status == "failed":
        return f"job {job.id} failed: {job.error}"
    sizes = ", ".join(f"{k} ({len(v)})" for k, v in job.clusters().items())
    q = job.result.info.get("quality_vs_folders")
    quality = f"; against the sub-folders: purity {q['purity']:.2f}, ARI {q['ari']:.2f}" if q else ""
    skipped = f"; {len(job.skipped)} unreadable skipped" if job.skipped else ""
    return f"job {job.id}: {len(job.clusters())} clusters in {job.seconds:.1f} s: {sizes}{quality}{skipped}"


def cluster_items(service: Service, name: str | None) -> list[Any]:
    """``(thumbnail, item id)`` of the first items of a cluster of the latest job."""
    job = service.clusters.latest()
    if job is None or not name or name not in job.clusters():
        return []
    return [(job.thumb(i), i) for i in job.clusters()[name][:PER_CLUSTER]]


def cluster_tab(service: Service, guard: Guard) -> None:
    """Cluster a folder on the server in the background, with progress, then browse the clusters."""
    import gradio as gr

    from visrec.cluster import METHODS

    def shown(job: Any) -> tuple[str, Any, list[Any]]:
        names = list(job.clusters())
        first = names[0] if names else None
        return job_summary(job), gr.update(choices=names, value=first), cluster_items(service, first)

    def run(folder: str, what: str, method: str, k: float, progress: Any = gr.Progress()) -> tuple[str, Any, list[Any]]:
        if not folder.strip():
            raise VisrecError("type the path of a folder on the server")
        chosen = None if method == "default" else method  # spectral for images, threshold for faces
        job = service.cluster_folder(folder.strip(), what=what, method=chosen, k=int(k) if k else None)
        while not job.wait(0.5):
            progress((job.done, max(job.total, 1)), desc=job.stage)
        if job.status == "failed":
            raise VisrecError(job_summary(job))
        return shown(job)

    def refresh() -> tuple[str, Any, list[Any]]:
        job = service.clusters.latest()
        if job is None:
            return "no clustering job yet", gr.update(choices=[], value=None), []
        return shown(job)

    if not service.config.allow_roots:
        gr.Markdown(
            "Clustering reads a folder on the server, which this server does not allow: restart with "
            "`--allow-root DIR` (the folders it may read), or use `visrec cluster FOLDER`."
        )
        return
    gr.Markdown(
        f"Group the images (or the faces) of a folder on the server under {service.roots_text()}; runs in the "
        "background."
    )
    with gr.Row():
        folder = gr.Textbox(label="folder on the server", elem_id="cluster-folder", scale=3)
        what = gr.Radio(["images", "faces"], value="images", label="cluster")
        method = gr.Dropdown(["default", *METHODS], value="default", label="method")
        k = gr.Number(0, label="clusters (0: automatic)", precision=0, minimum=0)
    with gr.Row():
        btn = gr.Button("Cluster", variant="primary", elem_id="cluster-button")
        again = gr.Button("Show latest job")
    status = gr.Markdown(elem_id="cluster-status")
    pick = gr.Dropdown([], label="cluster", elem_id="cluster-pick", interactive=True)
    gallery = gr.Gallery(label="items", columns=8, elem_id="cluster-items")
    btn.click(guard(run), [folder, what, method, k], [status, pick, gallery])
    again.click(guard(refresh), [], [status, pick, gallery])
    pick.input(guard(lambda name: cluster_items(service, name)), [pick], [gallery])  # user picks only
