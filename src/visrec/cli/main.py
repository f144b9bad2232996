"""Command line: parse -> library call -> print. ``--json`` on every command prints machine-readable output.

Exit codes: 0 ok, 1 error, 2 bad input, 3 index/encoder mismatch or damaged index, 4 index busy,
5 missing optional package or weights, 130 interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from visrec import render
from visrec.cli.common import command, print_json
from visrec.cli.scale import ENGINE, RAY_ADDRESS, STORE

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,  # help text is printed as written: "[list]" stays "[list]"
    help="visrec: index labeled images, then search, classify and recognise in new ones. "
    "Shell completion: visrec --install-completion.",
)
data_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Inspect a dataset: formats, near-duplicates, split leakage."
)
app.add_typer(data_app, name="data")

JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
WHERE = typer.Option(None, "--where", help="Filter expression, e.g. 'label == \"Sakura\"' or 'split != \"test\"'.")


_command = command("interrupted; finished work is kept and the next run resumes from it")


def _emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if as_json:
        print_json(data)
    else:
        human()


@app.command("index")
@_command
def index_cmd(
    dataset: Path = typer.Argument(..., help="Folder per label, unlabeled folder, Roboflow export or manifest CSV."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to create or update (e.g. naruto.vrx)."),
    fmt: str = typer.Option(None, "--format", help="folders | unlabeled | roboflow | manifest (default: detect)."),
    where: str = WHERE,
    encoder: str = typer.Option(None, "--encoder", help="Encoder name (default: efficientnet-lite0)."),
    checkpoint: str = typer.Option(
        None, "--checkpoint", help="hf-clip: model folder or cache id; open-clip: ARCH:FILE (ViT-B-32:/models/clip.pt)."
    ),
    store: str = STORE,
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    workers: int = typer.Option(2, "--workers", min=1, help="Decoding threads."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Calibrate unknown thresholds."),
    target_precision: float = typer.Option(0.95, "--target-precision", min=0.01, max=1.0),
    engine: str = ENGINE,
    ray_address: str = RAY_ADDRESS,
    rehash: bool = typer.Option(
        False, "--rehash", help="Hash every file (a full check); by default unchanged size+mtime+inode skips it."
    ),
    compress: str = typer.Option(
        None, "--compress", help="fp16 | sq8: smaller FAISS ANN indexes (from 20k items); set at creation."
    ),
    knn_metric: str = typer.Option(
        None,
        "--knn-metric",
        help="cosine | whitened: kNN neighbours by cosine or in a within-class whitening of the labels (default: "
        "the index's current metric, cosine for a new index; see docs/encoders.md).",
    ),
    as_json: bool = JSON,
) -> None:
    """Index a dataset: only new or changed images are embedded; an interrupted run resumes."""
    from visrec.prefetch import start_prefetch

    prefetch = None if rehash else start_prefetch(dataset, out)  # started before the heavier imports below
    from visrec import ops
    from visrec.index.pipeline import IndexConfig

    cfg = IndexConfig(store=store, batch_size=batch_size, workers=workers, calibrate=calibrate,
                      target_precision=target_precision, engine=engine, ray_address=ray_address,
                      rehash=rehash, compress=compress, knn_metric=knn_metric)  # fmt: skip
    with render.progress(enabled=not as_json) as bar:
        report = ops.index(dataset, out, fmt, where, encoder, checkpoint, cfg, bar, prefetch)
    _emit(as_json, report.to_dict(), lambda: render.indexing_report(report))


@app.command("search")
@_command
def search_cmd(
    index: Path = typer.Argument(..., help="Index folder."),
    image: list[Path] = typer.Option(None, "--image", "-i", help="Query image (repeatable)."),
    text: str = typer.Option(None, "--text", "-t", help="Text query."),
    k: int = typer.Option(10, "-k", min=1, help="Number of hits."),
    where: str = WHERE,
    route: str = typer.Option("auto", "--route", help="Text route: auto | labels | joint."),
    rerank: bool = typer.Option(
        True,
        "--rerank/--no-rerank",
        help="Image queries: re-rank in the index's centred space with query expansion (default), or plain cosine.",
    ),
    as_json: bool = JSON,
) -> None:
    """Search by image (image -> image) or by text (label names, or the encoder's image-text space)."""
    from visrec.index import Index

    if bool(image) == bool(text):
        raise typer.BadParameter("give either --image or --text")
    idx = Index(index)
    if text:
        res = idx.search_text(text, k, where, route)
        _emit(as_json, res.to_dict(), lambda: render.text_hits(res, idx.encoder_info.get("name", "")))
        return
    from visrec.index.inputs import encode_files

    emb, kept, skipped = encode_files(idx, list(image))  # an unreadable query is listed; the others still run
    queries = [image[i] for i in kept]
    hits = idx.search_vectors(emb.vectors, k, where, rerank)
    found, reasons = dict(zip(kept, hits, strict=True)), dict(skipped)
    data = [
        {"query": str(q), "hits": [h.to_dict() for h in found[i]]}
        if i in found
        else {"query": str(q), "hits": [], "skipped": reasons.get(str(q), "unreadable")}
        for i, q in enumerate(image)
    ]
    _emit(as_json, data, lambda: render.image_hits(queries, hits, skipped))


@app.command("classify")
@_command
def classify_cmd(
    index: Path = typer.Argument(..., help="Index folder."),
    inputs: list[Path] = typer.Argument(..., help="Images, folders of images, or a labeled dataset to evaluate."),
    mode: str = typer.Option(
        "auto",
        "--mode",
        "-m",
        help="auto (linear where the index has a linear head, else knn) | knn | prototype | linear | zeroshot | blend.",
    ),
    k: int = typer.Option(None, "-k", min=1, help="Neighbours for knn (default: the calibrated value)."),
    where: str = WHERE,
    classes: str = typer.Option(
        None,
        "--classes",
        help="zeroshot/blend: comma-separated classes, each 'Label=name' (answer Label, prompt 'a photo of a "
        "name') or just 'name'; or a file with one per line. Labels are what a labeled dataset is scored on.",
    ),
    raw: bool = typer.Option(False, "--raw", help="Skip the calibrated unknown decision."),
    target_precision: float = typer.Option(
        None, "--target-precision", min=0.01, max=1.0, help="Precision wanted on answers (default: calibrated)."
    ),
    novelty_prior: float = typer.Option(
        None, "--novelty-prior", min=0.0, max=0.99, help="Share of images of none of the classes to expect."
    ),
    show: int = typer.Option(20, "--show", min=0, help="Rows of per-image results to print (human output)."),
    as_json: bool = JSON,
) -> None:
    """Classify images: label, calibrated confidence, or "unknown" (novel: none of the classes; ambiguous:
    unclear which). On a labeled dataset, also print top-1 accuracy, macro-F1 and the unknown rate."""
    from visrec import ops

    names = ops.class_names(classes) if classes else None
    result = ops.classify(index, inputs, mode, k, where, names, not raw, target_precision, novelty_prior)
    _emit(as_json, result.to_dict(), lambda: render.classification(result, show))


@app.command("calibrate")
@_command
def calibrate_cmd(
    index: Path = typer.Argument(..., help="Index folder."),
    held_out: Path = typer.Argument(None, help="Labeled held-out dataset (default: leave-one-group-out on the index)."),
    where: str = WHERE,
    modes: str = typer.Option("knn,prototype,linear", "--modes", help="Comma-separated modes to calibrate."),
    target_precision: float = typer.Option(0.95, "--target-precision", min=0.01, max=1.0),
    novelty_prior: float = typer.Option(
        0.1, "--novelty-prior", min=0.0, max=0.99, help="Share of images of none of the classes to expect."
    ),
    metric: str = typer.Option(
        "",
        "--metric",
        help="kNN neighbours by: whitened (the index's within-class whitening; later updates keep it) | cosine "
        "(default: the index's current kNN metric, cosine for a new index).",
    ),
    as_json: bool = JSON,
) -> None:
    """Calibrate the unknown decision to a target precision on answers, with novel images at a prior."""
    from visrec import ops
    from visrec.classify.knn import KNN_METRICS
    from visrec.errors import BadInput

    if metric and metric not in KNN_METRICS:
        raise BadInput(f"--metric must be one of {', '.join(KNN_METRICS)}, got {metric!r}")
    modes_ = [m.strip() for m in modes.split(",")]
    cals = ops.calibrate(index, held_out, where, modes_, target_precision, novelty_prior, metric or None)
    _emit(as_json, cals, lambda: render.calibration(cals))


@app.command("info")
@_command
def info_cmd(index: Path = typer.Argument(..., help="Index folder."), as_json: bool = JSON) -> None:
    """Show what an index holds: counts per label, encoder, store, calibration (face index: its two rules)."""
    from visrec.index import Index

    if (index / "faces.json").is_file():
        from visrec.faces.ops import face_index_info

        print_json(face_index_info(index))
        return

    info = Index(index).info()
    _emit(as_json, info, lambda: render.info(info))


@data_app.command("check")
@_command
def data_check_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder or manifest CSV."),
    fmt: str = typer.Option(None, "--format", help="folders | unlabeled | roboflow | manifest (default: detect)."),
    split_field: str = typer.Option("split", "--split-field", help="Field holding the split of each image."),
    train: str = typer.Option("train,valid", "--train", help="Comma-separated training split values."),
    test: str = typer.Option("test", "--test", help="Comma-separated test split values."),
    threshold: int = typer.Option(None, "--threshold", help="Near-duplicate Hamming threshold (bits of 256)."),
    write_split: Path = typer.Option(None, "--write-split", help="Write a manifest with a leak-free grouped_split."),
    as_json: bool = JSON,
) -> None:
    """Check a dataset: readable files, classes, near-duplicates, and leakage between train and test."""
    from visrec import ops

    with render.progress(enabled=not as_json) as bar:
        res = ops.data_check(dataset, fmt, split_field, train.split(","), test.split(","), threshold, write_split, bar)
    _emit(as_json, res, lambda: render.data_check(res))


@app.command("demo")
@_command
def demo_cmd(
    data: Path = typer.Option(None, "--data", help="Labeled dataset to use (default: naruto_roboflow if present)."),
    out: Path = typer.Option(Path("demo.vrx"), "--out", "-o", help="Index folder to write."),
    sample: bool = typer.Option(
        False, "--sample", help="Use the photos scikit-learn ships even if shared data exists."
    ),
    as_json: bool = JSON,
) -> None:
    """The end-to-end job on real weights: index a leak-free train split, classify the test split, search."""
    from visrec import demo

    with render.progress(enabled=not as_json) as bar:
        res = demo.run(data, out, bar, sample=sample)
    _emit(as_json, res.to_dict(), lambda: render.demo(res))


@app.command("prepare-models")
@_command
def prepare_models_cmd(
    encoders: list[str] = typer.Argument(
        None, help="Encoders to prepare (default: efficientnet-lite0 with its text side; all-minilm-l6-v2 alone)."
    ),
    as_json: bool = JSON,
) -> None:
    """Export encoders to ONNX into the model cache now (needs PyTorch; the install script runs this once)."""
    from visrec.encoders.prepare import DEFAULT_MODELS, prepare_models

    res = prepare_models(encoders or DEFAULT_MODELS)
    _emit(as_json, [m.to_dict() for m in res], lambda: render.prepared(res))


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command("serve")
@_command
def serve_cmd(
    index: Path = typer.Argument(..., help="Index folder to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; other than loopback needs --token."),
    port: int = typer.Option(7860, "--port", min=1, max=65535),
    token: str = typer.Option(None, "--token", envvar="VISREC_API_TOKEN", help="API token (Bearer)."),
    writable: bool = typer.Option(False, "--writable", help="Allow adding and deleting images."),
    allow_root: list[Path] = typer.Option(
        [], "--allow-root", help="A folder (repeatable) under which clustering and indexing may read; none: off."
    ),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", min=0.01, help="Largest accepted upload."),
    max_megapixels: float = typer.Option(40.0, "--max-megapixels", min=0.01, help="Largest accepted image."),
    max_concurrent: int = typer.Option(2, "--max-concurrent", min=1, help="Image requests processed at once."),
    ui: bool = typer.Option(True, "--ui/--no-ui", help="Serve the web UI at / beside the API."),
    report: Path = typer.Option(None, "--report", help="A `visrec compare` report.html to show in the Compare tab."),
    faces: Path = typer.Option(None, "--faces", help="A face index (`visrec faces index`) to identify faces against."),
) -> None:
    """Serve the HTTP API (/api, OpenAPI at /docs) and the web UI (/) for one index."""
    import importlib.util

    from visrec.errors import BadInput, MissingExtra

    for mod, pkg in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("gradio", "gradio")):
        if importlib.util.find_spec(mod) is None:
            raise MissingExtra(pkg, "web", "visrec serve")
    from visrec.web import ServeConfig, create_app

    if host not in LOOPBACK and not token:
        raise BadInput(f"binding {host} exposes the index beyond this machine: set --token or VISREC_API_TOKEN")
    import uvicorn

    for root in allow_root:
        if not root.is_dir():
            raise BadInput(f"--allow-root {root}: not a folder on this machine; give an existing folder")
    cfg = ServeConfig(index, writable, int(max_upload_mb * 2**20), token, report, faces, tuple(allow_root),
                      int(max_megapixels * 1e6), max_concurrent)  # fmt: skip
    render.err.print(f"serving {index} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(create_app(cfg, ui=ui), host=host, port=port, log_level="warning")  # type: ignore[arg-type]


from visrec.cli.eval import register as _register_eval  # noqa: E402  (commands defined in their own module)

_register_eval(app)
from visrec.cli.faces import register as _register_faces  # noqa: E402

_register_faces(app)
from visrec.cli.scene import register as _register_scene  # noqa: E402

_register_scene(app)
from visrec.cli.finetune import register as _register_finetune  # noqa: E402

_register_finetune(app)
from visrec.cli.scale import register as _register_scale  # noqa: E402

_register_scale(app, wrap=_command)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
