"""``visrec faces index|verify|identify|cluster`` and ``visrec cluster``: faces and clustering on the command line.

Register on the main app with one line: ``visrec.cli_faces.register(app)``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from visrec import render
from visrec.errors import VisrecError

F = TypeVar("F", bound=Callable[..., Any])

faces_app = typer.Typer(help="Faces: index people, verify two photos, identify every face, cluster faces.")

DETECTOR = typer.Option("dlib-hog", "--detector", help="Face detector: dlib-hog (fast) | dlib-cnn (slow, more faces).")
EMBEDDER = typer.Option("dlib-resnet", "--embedder", help="Face embedder: dlib-resnet (128-d).")
METHOD = typer.Option("agglomerative", "--method", "-m", help="agglomerative | hdbscan | kmeans.")
K = typer.Option(None, "--k", help="Number of clusters (default: automatic).")
PREVIOUS = typer.Option(None, "--keep-edits", help="A previous clusters.json whose manual edits to replay.")


def _command(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VisrecError as e:
            render.error(str(e))
            raise typer.Exit(e.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")


def _pipeline(detector: str, embedder: str) -> Any:
    from visrec.faces import create_face_pipeline

    return create_face_pipeline(detector, embedder)


@faces_app.command("index")
@_command
def index_cmd(
    root: Path = typer.Argument(..., help="One sub-folder of photos per person."),
    out: Path = typer.Option(..., "--out", "-o", help="Face index folder to write."),
    all_faces: bool = typer.Option(False, "--all-faces", help="Index every face of a photo, not only the largest."),
    far: float = typer.Option(1e-2, "--far", help="Target false-accept rate of the stored threshold."),
    detector: str = DETECTOR,
    embedder: str = EMBEDDER,
) -> None:
    """Index labeled faces and calibrate the same-person threshold from the identities."""
    from visrec.faces.ops import index_faces

    g = index_faces(root, out, _pipeline(detector, embedder), all_faces, far)
    cal = g.calibration.to_dict() if g.calibration else None
    _emit(
        {
            "index": str(out),
            "faces": len(g.rows),
            "people": len(set(g.labels)),
            "skipped": g.skipped,
            "calibration": cal,
        }
    )


@faces_app.command("verify")
@_command
def verify_cmd(
    a: Path = typer.Argument(..., help="First photo."),
    b: Path = typer.Argument(..., help="Second photo."),
    index: Path = typer.Option(None, "--index", help="Face index whose calibration to use."),
    detector: str = DETECTOR,
    embedder: str = EMBEDDER,
) -> None:
    """Same person? Prints distance, calibrated probability and the decision (largest face of each photo)."""
    from visrec.faces import FaceGallery
    from visrec.faces.ops import verify

    cal = FaceGallery.load(index).calibration if index else None
    _emit(verify(a, b, _pipeline(detector, embedder), cal))


@faces_app.command("identify")
@_command
def identify_cmd(
    index: Path = typer.Argument(..., help="Face index folder."),
    image: Path = typer.Argument(..., help="Photo with one or more faces."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the photo with labeled boxes here (PNG/JPEG)."),
    detector: str = DETECTOR,
) -> None:
    """Every face in the photo -> person or unknown, with its box (xyxy pixels) and distance."""
    from dataclasses import asdict

    from visrec.faces import FaceGallery
    from visrec.faces.ops import draw_matches, identify

    gallery = FaceGallery.load(index)
    pipe = _pipeline(detector, str(gallery.pipeline.get("embedder", {}).get("name", "dlib-resnet")))
    rgb, matches = identify(gallery, image, pipe)
    if out is not None:
        draw_matches(rgb, matches).save(out)
    _emit({"image": str(image), "faces": [asdict(m) for m in matches], "drawn": str(out) if out else None})


def _cluster_cfg(method: str, k: int | None, threshold: float | None) -> Any:
    from visrec.cluster import ClusterConfig

    return ClusterConfig(method=method, k=k, distance_threshold=threshold)


def _write(result: Any, skipped: list[Any], out: Path, sheets: Any) -> None:
    from visrec.cluster.run import write_sheets

    result.save(out)
    written = write_sheets(result, sheets, out.with_suffix("").parent / f"{out.stem}_sheets")
    summary = {name: len(items) for name, items in result.clusters().items()}
    _emit({"out": str(out), "clusters": summary, "sheets": str(written[0].parent) if written else None,
           "quality_vs_folders": result.info.get("quality_vs_folders"), "edits_not_replayed": skipped})  # fmt: skip


@faces_app.command("cluster")
@_command
def faces_cluster_cmd(
    root: Path = typer.Argument(..., help="Folder of photos (recursive)."),
    out: Path = typer.Option(Path("face_clusters.json"), "--out", "-o", help="Clusters JSON to write."),
    method: str = METHOD,
    k: int = K,
    threshold: float = typer.Option(
        None, "--threshold", help="Agglomerative cosine distance (default: calibrated-like 0.07 when no k)."
    ),
    previous: Path = PREVIOUS,
    detector: str = DETECTOR,
    embedder: str = EMBEDDER,
) -> None:
    """Group every face found under ROOT into people; one contact sheet per cluster."""
    from visrec.cluster.run import finish
    from visrec.faces.ops import embed_faces

    pipe = _pipeline(detector, embedder)
    ids, vecs, crops = embed_faces(root, pipe)
    if threshold is None and k is None and method == "agglomerative":
        threshold = pipe.default_threshold
    result, skipped = finish(ids, vecs, _cluster_cfg(method, k, threshold), {"faces": pipe.describe()}, previous)
    _write(result, skipped, out, crops.__getitem__)


def cluster_cmd(
    root: Path = typer.Argument(..., help="Folder of images (recursive)."),
    out: Path = typer.Option(Path("clusters.json"), "--out", "-o", help="Clusters JSON to write."),
    encoder: str = typer.Option("efficientnet-lite0", "--encoder", "-e", help="Any registered image encoder."),
    method: str = METHOD,
    k: int = K,
    threshold: float = typer.Option(None, "--threshold", help="Agglomerative cosine distance instead of k."),
    previous: Path = PREVIOUS,
) -> None:
    """Cluster whole images with any encoder; writes clusters.json and one contact sheet per cluster."""
    from visrec.cluster.run import embed_images, finish, image_thumb

    ids, vecs, info = embed_images(root, encoder)
    result, skipped = finish(ids, vecs, _cluster_cfg(method, k, threshold), info, previous)
    _write(result, skipped, out, image_thumb(root))


def register(app: typer.Typer) -> None:
    """Add ``faces`` (sub-app) and ``cluster`` (command) to the main CLI."""
    app.add_typer(faces_app, name="faces")
    app.command("cluster")(_command(cluster_cmd))
