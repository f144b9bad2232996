"""Cluster a folder of images with any encoder (or the faces in it) and write clusters.json + contact sheets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrec.cluster.algorithms import ClusterConfig, cluster
from visrec.cluster.edits import NOISE, Clustering
from visrec.cluster.metrics import cluster_quality
from visrec.cluster.sheet import contact_sheet
from visrec.errors import EmptyDataset
from visrec.types import Embeddings

Thumb = Callable[[str], np.ndarray]
"""Item id -> RGB uint8 thumbnail for the contact sheet."""


def image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted); raises ``EmptyDataset`` when there are none. A broken
    symlink with an image name is kept, so that the caller reports it as missing rather than ignoring it."""
    from visrec.data import is_image_file

    def listed(p: Path) -> bool:
        return (p.is_file() or (p.is_symlink() and not p.exists())) and is_image_file(p)

    files = sorted(p for p in Path(root).rglob("*") if listed(p))
    if not files:
        raise EmptyDataset(f"{root}: no image files (jpg, png, webp...) to cluster")
    return files


def folder_labels(ids: Sequence[str]) -> list[str] | None:
    """The first path component of each id when every item sits in a sub-folder (folder-per-label), else None."""
    parts = [i.split("#")[0].split("/") for i in ids]
    return [p[0] for p in parts] if all(len(p) > 1 for p in parts) else None


def finish(
    ids: Sequence[str], vectors: np.ndarray, cfg: ClusterConfig, info: dict[str, Any], previous: Path | None
) -> tuple[Clustering, list[dict[str, Any]]]:
    """Cluster, then replay the manual edits of a previous clusters file (returned: the edits that no longer fit)."""
    labels = cluster(vectors, cfg)
    made = {"method": cfg.method, "k": cfg.k} | ({"min_size": cfg.min_size} if cfg.min_size > 1 else {})
    result = Clustering.from_labels(list(ids), labels, info | made)
    skipped: list[dict[str, Any]] = []
    if previous is not None and previous.is_file():
        skipped = result.reapply(Clustering.load(previous).edits)
    truth = folder_labels(ids)
    if truth is not None and len(set(truth)) > 1:
        pred = [result.assignment[i] for i in ids]
        quality: dict[str, Any] = cluster_quality(pred, truth)  # noise scored as one more cluster
        unclustered = pred.count(NOISE)
        if unclustered:
            quality |= {"clusters": float(len(set(pred) - {NOISE})), "unclustered": float(unclustered)}
        result.info["quality_vs_folders"] = quality
    return result, skipped


def write_sheets(result: Clustering, thumb: Thumb, folder: Path, per_cluster: int = 48) -> list[Path]:
    """One PNG contact sheet per cluster in ``folder`` (``<cluster>.png``); returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, items in result.clusters().items():
        path = folder / f"{name}.png"
        contact_sheet([thumb(i) for i in items[:per_cluster]]).save(path)
        written.append(path)
    return written


def embed_images(root: Path, encoder: str | Any, batch: int = 32) -> tuple[Embeddings, dict[str, Any], dict[str, str]]:
    """Whole-image embeddings of every readable image under ``root`` (ids = relative paths; ``joint`` set when the
    encoder has a text side), the encoder's facts, and the images left out (path -> reason, e.g. ``"truncated"``).
    ``encoder``: a registered name or an encoder object. ``EmptyDataset`` when no image can be read."""
    from visrec.data.images import load_readable
    from visrec.encoders import create_encoder

    files = image_files(root)
    enc = create_encoder(encoder) if isinstance(encoder, str) else encoder
    parts: list[Embeddings] = []
    unreadable: dict[str, str] = {}
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        arrays, kept, bad = load_readable(chunk, draft_size=enc.input_size)
        unreadable.update({b.path: b.reason for b in bad})  # one broken file does not stop the folder: listed
        if arrays:
            parts.append(enc.encode_images(arrays, ids=[chunk[i].relative_to(root).as_posix() for i in kept]))
    if not parts:
        raise EmptyDataset(f"{root}: none of the {len(files)} images could be read ({unreadable_counts(unreadable)})")
    emb = Embeddings.concat(parts, parts[0].encoder_id, enc.dim, enc.joint_dim)
    return emb, {"encoder": enc.describe(), "root": str(Path(root).resolve())}, unreadable


def unreadable_counts(unreadable: dict[str, str]) -> str:
    """``{"a.jpg": "empty", "b.jpg": "empty"}`` -> ``"2 empty"``."""
    reasons = list(unreadable.values())
    return ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))


def image_thumb(root: Path) -> Thumb:
    """Thumbnails of whole images by relative path."""
    from visrec.data import load_image

    return lambda item: load_image(root / item, draft_size=128)
