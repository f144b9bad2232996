"""``visrec faces index|verify|identify|cluster`` and ``visrec cluster``: faces and clustering on the command line.

Register on the main app with one line: ``visrec.cli.faces.register(app)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from visrec import render
from visrec.cli.common import command, print_json
from visrec.errors import BadInput

faces_app = typer.Typer(
    rich_markup_mode=None, help="Faces: index people, verify two photos, identify every face, cluster faces."
)

DETECTOR = typer.Option(
    "blazeface", "--detector", help="Face detector: blazeface (default) | blazeface-short | dlib-hog | dlib-cnn (slow)."
)
EMBEDDER = typer.Option(
    "dlib-resnet", "--embedder", help="Face embedder: dlib-resnet (128-d, default) | facenet-512 (FaceNet, 512-d)."
)
METHOD = typer.Option(
    None,
    "--method",
    "-m",
    help="spectral | agglomerative | hdbscan | kmeans (default: spectral with automatic k for images; for faces, "
    "agglomerative at the face verification threshold; agglomerative whenever --threshold is given).",
)
K = typer.Option(None, "--k", help="Number of clusters (default: automatic).")
PREVIOUS = typer.Option(None, "--keep-edits", help="A previous clusters.json whose manual edits to replay.")
MIN_SIZE_HELP = "Clusters with fewer members are reported as one 'noise' group (unclustered); 1 keeps all"
NAME_FROM = typer.Option(
    None, "--name-from", help="Name clusters from this labeled index (image index, or face index for faces)."
)
NAME_K = typer.Option(5, "--name-k", help="Nearest indexed items that vote for a cluster's name, per member.")
NAME_SHARE = typer.Option(0.5, "--name-min-share", help="Share of all votes the winning label needs.")
NAME_DIST = typer.Option(
    None, "--name-max-distance", help="Cosine distance beyond which a neighbour does not vote (face index: its own)."
)


_command = command("interrupted; nothing was written")


def _pipeline(detector: str, embedder: str) -> Any:
    from visrec.faces import create_face_pipeline

    return create_face_pipeline(detector, embedder)


@faces_app.command("index")
@_command
def index_cmd(
    root: Path = typer.Argument(..., help="One sub-folder of photos per person."),
    out: Path = typer.Option(..., "--out", "-o", help="Face index folder to write."),
    all_faces: bool = typer.Option(
        False,
        "--all-faces",
        help="Index every face of a photo at least half the main face's size, not only the main (largest, "
        "most central) face.",
    ),
    far: float = typer.Option(
        1e-3,
        "--far",
        help="`faces verify`: share of pairs of two different people called the same person (per pair).",
    ),
    fpir: float = typer.Option(
        1e-2,
        "--fpir",
        help="`faces identify`: share of photos of people NOT in the index that get a name anyway (measured by "
        "leaving the index's own people out); lower keeps more strangers unknown and misses more known people.",
    ),
    detector: str = DETECTOR,
    embedder: str = EMBEDDER,
) -> None:
    """Index labeled faces (one per photo) and calibrate verification and identification from the identities."""
    from visrec.faces.ops import identification_summary, index_faces

    g = index_faces(root, out, _pipeline(detector, embedder), all_faces, far, fpir)
    cal = g.calibration.to_dict() if g.calibration else None
    if cal is not None:
        cal["identification"] = identification_summary(g.calibration)
    if g.calibration is not None and g.calibration.auc < 0.9:
        render.warn(
            f"{root}: same-person and different-person distances barely separate (AUC {g.calibration.auc:.2f}): "
            "check that each sub-folder holds one person's photos (point at the folder of person folders)"
        )
    print_json(
        {
            "index": str(out),
            "faces": len(g.rows),
            "people": len(set(g.labels)),
            "skipped": g.skipped,
            "dropped_faces": len(g.skipped.get("dropped_faces", [])),
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
    print_json(verify(a, b, _pipeline(detector, embedder), cal))


@faces_app.command("identify")
@_command
def identify_cmd(
    index: Path = typer.Argument(..., help="Face index folder."),
    image: Path = typer.Argument(..., help="Photo with one or more faces."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the photo with labeled boxes here (PNG/JPEG)."),
    detector: str = typer.Option(None, "--detector", help="Face detector (default: the one the index was built with)."),
) -> None:
    """Every face in the photo -> person or unknown, with its box (xyxy pixels) and distance."""
    from dataclasses import asdict

    from visrec.faces import FaceGallery
    from visrec.faces.ops import draw_matches, identify

    gallery = FaceGallery.load(index)
    detector = detector or str(gallery.pipeline.get("detector", {}).get("name", "blazeface"))
    pipe = _pipeline(detector, str(gallery.pipeline.get("embedder", {}).get("name", "dlib-resnet")))
    rgb, matches = identify(gallery, image, pipe)
    if out is not None:
        draw_matches(rgb, matches).save(out)
    print_json({"image": str(image), "faces": [asdict(m) for m in matches], "drawn": str(out) if out else None})


def _cluster_cfg(
    method: str | None, k: int | None, threshold: float | None, default: str = "spectral", min_size: int = 1
) -> Any:
    from visrec.cluster import ClusterConfig

    method = method or ("agglomerative" if threshold is not None else default)
    return ClusterConfig(method=method, k=k, distance_threshold=threshold, min_size=min_size)


def _source(name_from: Path | None, want: str) -> Any:
    """The index that names the clusters (checked to be of the ``want`` kind), or None."""
    if name_from is None:
        return None
    from visrec.cluster.sources import load_name_source

    source = load_name_source(name_from)
    if source.kind != want:
        fix = "visrec faces cluster" if source.kind == "faces" else "visrec cluster"
        raise BadInput(f"{name_from} is a {source.kind} index; it names the clusters of `{fix} --name-from`")
    return source


def _name(result: Any, ids: Any, emb: Any, joint: Any, source: Any, opts: tuple[Any, ...]) -> Any:
    """Name the clusters from ``source`` when given; returns the JSON summary of the names (or None)."""
    if source is None:
        return None
    from dataclasses import asdict

    from visrec.cluster.naming import NamingConfig
    from visrec.cluster.sources import name_from_source

    k, share, dist = opts
    cfg = NamingConfig(k=k, min_share=share, max_distance=dist)
    return [asdict(n) for n in name_from_source(result, ids, emb, source, joint, cfg)]


def _write(result: Any, skipped: list[Any], out: Path, sheets: Any, names: Any = None, unreadable: Any = None) -> None:
    from visrec.cluster.run import write_sheets

    out.parent.mkdir(parents=True, exist_ok=True)
    if unreadable:
        result.info["unreadable"] = unreadable  # clusters.json says which files were left out, and why
    result.save(out)
    written = write_sheets(result, sheets, out.with_suffix("").parent / f"{out.stem}_sheets")
    summary = {name: len(items) for name, items in result.clusters().items()}
    print_json({"out": str(out), "clusters": summary, "sheets": str(written[0].parent) if written else None,
           "quality_vs_folders": result.info.get("quality_vs_folders"), "edits_not_replayed": skipped,
           "names": names, "unreadable": unreadable or {}})  # fmt: skip


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
    min_size: int = typer.Option(
        None, "--min-size", help=f"{MIN_SIZE_HELP} (default 2: a face seen once is unclustered)."
    ),
    one_per_photo: bool = typer.Option(
        False, "--one-per-photo", help="Only each photo's main face (most central of the largest), as faces index."
    ),
    previous: Path = PREVIOUS,
    detector: str = DETECTOR,
    embedder: str = EMBEDDER,
    name_from: Path = NAME_FROM,
    name_k: int = NAME_K,
    name_share: float = NAME_SHARE,
    name_dist: float = NAME_DIST,
) -> None:
    """Group every face found under ROOT into people; one contact sheet per cluster."""
    from visrec.cluster.algorithms import FACES_MIN_SIZE
    from visrec.cluster.run import finish
    from visrec.faces.ops import embed_faces

    source = _source(name_from, "faces")
    pipe = _pipeline(detector, embedder)
    ids, vecs, crops, unreadable = embed_faces(root, pipe, main_only=one_per_photo)
    if threshold is None and k is None and method in (None, "agglomerative"):
        threshold = pipe.default_threshold
    smallest = FACES_MIN_SIZE if min_size is None else min_size
    cfg = _cluster_cfg(method, k, threshold, default="agglomerative", min_size=smallest)
    result, skipped = finish(ids, vecs, cfg, {"faces": pipe.describe()}, previous)
    names = _name(result, ids, vecs, None, source, (name_k, name_share, name_dist))
    _write(result, skipped, out, crops.__getitem__, names, unreadable)


def cluster_cmd(
    root: Path = typer.Argument(..., help="Folder of images (recursive)."),
    out: Path = typer.Option(Path("clusters.json"), "--out", "-o", help="Clusters JSON to write."),
    encoder: str = typer.Option(
        None,
        "--encoder",
        "-e",
        help="Any registered image encoder (default: the --name-from index's, else the default).",
    ),
    method: str = METHOD,
    k: int = K,
    threshold: float = typer.Option(None, "--threshold", help="Agglomerative cosine distance instead of k."),
    min_size: int = typer.Option(1, "--min-size", help=f"{MIN_SIZE_HELP}."),
    previous: Path = PREVIOUS,
    name_from: Path = NAME_FROM,
    name_k: int = NAME_K,
    name_share: float = NAME_SHARE,
    name_dist: float = NAME_DIST,
) -> None:
    """Cluster whole images with any encoder; writes clusters.json and one contact sheet per cluster.

    With --name-from INDEX, clusters are named by the majority label of their members' nearest indexed images,
    else (when the index's encoder has a CLIP-like text side) by zero-shot match to the index's label names,
    else unnamed.
    """
    from visrec.cluster.run import embed_images, finish, image_thumb
    from visrec.encoders import DEFAULT_ENCODER

    source = _source(name_from, "images")
    chosen: Any = encoder or DEFAULT_ENCODER
    if source is not None:
        from visrec.encoders import create_encoder

        chosen = source.encoder if encoder is None else create_encoder(encoder)
        source.index.check_encoder(chosen)  # naming compares vectors with the index's: same encoder only
    emb, info, unreadable = embed_images(root, chosen)
    ids = list(emb.ids)
    result, skipped = finish(ids, emb.vectors, _cluster_cfg(method, k, threshold, min_size=min_size), info, previous)
    names = _name(result, ids, emb.vectors, emb.joint, source, (name_k, name_share, name_dist))
    _write(result, skipped, out, image_thumb(root), names, unreadable)


def register(app: typer.Typer) -> None:
    """Add ``faces`` (sub-app) and ``cluster`` (command) to the main CLI."""
    app.add_typer(faces_app, name="faces")
    app.command("cluster")(_command(cluster_cmd))
