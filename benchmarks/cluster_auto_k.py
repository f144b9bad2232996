"""Automatic k for clustering, rule against rule, on every labeled dev set: k found vs the true count, NMI, purity.

Usage: ``python benchmarks/cluster_auto_k.py [DATA_ROOT] [--per-class 40] [--caltech-classes 12] [--cache DIR]``
(DATA_ROOT defaults to ``../shared/data``). Sets: ``naruto_roboflow`` (all 391 images), ``cifar10_subset`` and
``caltech101_dev`` (subsampled: ``--per-class`` images of each class, ``--caltech-classes`` classes drawn with a
fixed seed) with the default image encoder, and the faces of ``deepface_celebs`` (dlib pipeline, as
``visrec faces cluster`` embeds them: every face found, and apart the labeled face of each photo). ``--cache`` keeps
the vectors between runs (``.npy`` + JSON ids).

Rules: the former default (agglomerative, k of the best silhouette), the default (spectral clustering of the
neighbour graph, k at its eigengap), and mixtures of the two, plus Ward's largest height ratio; on faces also
``visrec faces cluster``'s default (agglomerative at the verification threshold, clusters of fewer than
``FACES_MIN_SIZE`` faces reported as unclustered) and the same cut keeping every cluster (the former default). The
k found counts clusters, not the unclustered. Prints one JSON line per set
(k found, true count, NMI, purity per rule, and the NMI of five methods given the true k: what any k rule could
reach with these features), then per rule the mean |k - true| and mean NMI over the image sets
and, apart, over the faces (whose count includes background faces of other people: see docs).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from visrec.cluster import cluster_quality
from visrec.cluster.algorithms import FACES_MIN_SIZE, ClusterConfig, cluster, eigengap_k, neighbour_graph

K_RANGE = (2, 30)


def _sample(root: Path, per_class: int, classes: int | None, seed: int = 0) -> tuple[list[Path], list[str]]:
    """Up to ``per_class`` images of each folder under ``root/images`` (``classes`` folders drawn at random)."""
    rng = np.random.default_rng(seed)
    folders = sorted(p for p in (root / "images").iterdir() if p.is_dir() and p.name != "BACKGROUND_Google")
    if classes is not None and classes < len(folders):
        folders = [folders[i] for i in sorted(rng.choice(len(folders), classes, replace=False))]
    files: list[Path] = []
    for f in folders:
        imgs = sorted(p for p in f.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if per_class and len(imgs) > per_class:
            imgs = [imgs[i] for i in sorted(rng.choice(len(imgs), per_class, replace=False))]
        files += imgs
    return files, [p.parent.name for p in files]


def _cached(cache: Path | None, name: str, make: Callable[[], tuple[np.ndarray, list[str]]]) -> Any:
    if cache is not None and (cache / f"{name}.npy").is_file():
        return np.load(cache / f"{name}.npy"), json.loads((cache / f"{name}.json").read_text())
    vecs, truth = make()
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / f"{name}.npy", vecs)
        (cache / f"{name}.json").write_text(json.dumps(truth))
    return vecs, truth


def image_sets(data: Path, per_class: int, caltech_classes: int, cache: Path | None) -> dict[str, Any]:
    from visrec.encoders import create_encoder

    enc = create_encoder()
    plans = {
        "naruto_roboflow": (data / "naruto_roboflow", 0, None),
        "cifar10_subset": (data / "cifar10_subset", per_class, None),
        "caltech101_dev": (data / "caltech101_dev", per_class, caltech_classes),
    }
    out = {}
    for name, (root, per, classes) in plans.items():
        files, truth = _sample(root, per, classes)
        out[name] = _cached(cache, name, lambda f=files, t=truth: (enc.encode_images(f).vectors, t))
    return out


def face_sets(data: Path, cache: Path | None) -> dict[str, Any]:
    """Every face found (the folder's person plus background faces of other people in a few photos), and the
    labeled faces only: face #0 of each photo, the detector's first, which is the folder's person in all 61."""
    from visrec.faces import create_face_pipeline
    from visrec.faces.ops import embed_faces

    def make() -> tuple[np.ndarray, list[str]]:
        ids, vecs, _ = embed_faces(
            data / "deepface_celebs" / "images", create_face_pipeline("blazeface", "dlib-resnet")
        )
        return vecs, ids

    vecs, ids = _cached(cache, "deepface_celebs_face_ids", make)
    first = [i for i, item in enumerate(ids) if item.endswith("#0")]
    return {
        "deepface_celebs (faces, all)": (vecs, [item.split("/")[0] for item in ids]),
        "deepface_celebs (faces, labeled)": (vecs[first], [ids[i].split("/")[0] for i in first]),
    }


def at_true_k(x: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Partitions at the true k: how well each method can do once k is right (the ceiling of any k rule)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.decomposition import PCA

    pca = PCA(whiten=True, random_state=0).fit(x - x.mean(axis=0))
    axes = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), 0.9)) + 1
    whitened = pca.transform(x - x.mean(axis=0))[:, :axes]
    return {
        "spectral": cluster(x, ClusterConfig("spectral", k=k)),
        "spectral, PCA-whitened (90 % of the variance)": cluster(whitened, ClusterConfig("spectral", k=k)),
        "k-means": cluster(x, ClusterConfig("kmeans", k=k)),
        "agglomerative (average, cosine)": cluster(x, ClusterConfig("agglomerative", k=k)),
        "ward": AgglomerativeClustering(k, linkage="ward").fit_predict(x),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rules(x: np.ndarray) -> dict[str, np.ndarray]:
    """Labels from each automatic-k rule on unit vectors ``x (n, d)``."""
    from scipy.cluster.hierarchy import fcluster, linkage

    before = ClusterConfig("agglomerative", k_range=K_RANGE, auto="silhouette")
    graph = neighbour_graph(x)
    k_gap = eigengap_k(graph, K_RANGE)
    ward = linkage(x, method="ward")
    h = np.sort(ward[:, 2])
    ks = np.arange(K_RANGE[0], min(K_RANGE[1], len(x) - 1) + 1)
    k_ward = int(ks[np.argmax(h[len(x) - ks] / np.maximum(h[len(x) - ks - 1], 1e-12))])
    return {
        "agglomerative, silhouette k (before)": cluster(x, before),
        "spectral, eigengap k (default)": cluster(x, ClusterConfig("spectral", k_range=K_RANGE)),
        "agglomerative, eigengap k": cluster(x, ClusterConfig("agglomerative", k=k_gap)),
        "spectral, silhouette k": cluster(x, ClusterConfig("spectral", k_range=K_RANGE, auto="silhouette")),
        "ward, largest height ratio": fcluster(ward, k_ward, criterion="maxclust"),
    }


def face_rules(x: np.ndarray) -> dict[str, np.ndarray]:
    """``visrec faces cluster``'s default (agglomerative at the face verification threshold) beside the rules."""
    from visrec.faces.pipeline import DEFAULT_THRESHOLDS

    threshold = DEFAULT_THRESHOLDS["dlib-resnet"]
    before = ClusterConfig("agglomerative", distance_threshold=threshold)
    now = ClusterConfig("agglomerative", distance_threshold=threshold, min_size=FACES_MIN_SIZE)
    return {
        "agglomerative at the verification threshold (faces default before)": cluster(x, before),
        f"the same, clusters under {FACES_MIN_SIZE} faces unclustered (faces default)": cluster(x, now),
        **rules(x),
    }


def dev_set_arguments(description: str) -> argparse.ArgumentParser:
    """The parser of the dev-set options (data root, images per class, caltech classes, vector cache)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("data", nargs="?", type=Path, default=Path("../shared/data"))
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--caltech-classes", type=int, default=12)
    ap.add_argument("--cache", type=Path, default=None)
    return ap


def main() -> None:
    ap = dev_set_arguments(__doc__.splitlines()[0])
    ap.add_argument("--no-faces", action="store_true")
    args = ap.parse_args()
    sets = image_sets(args.data, args.per_class, args.caltech_classes, args.cache)
    if not args.no_faces:
        sets |= face_sets(args.data, args.cache)
    report: dict[str, Any] = {"sets": {}, "rules": {}, "faces": {}}
    for name, (vecs, truth) in sets.items():
        true_k = len(set(truth))
        row = {"n": len(truth), "true_k": true_k}
        for rule, labels in (face_rules if "faces" in name else rules)(_unit(vecs)).items():
            q = cluster_quality([int(v) for v in labels], truth)  # the unclustered (-1) scored as one more cluster
            row[rule] = {"k": len(set(labels.tolist()) - {-1}), "nmi": round(q["nmi"], 3),
                         "purity": round(q["purity"], 3), "unclustered": int((labels < 0).sum())}  # fmt: skip
            agg = report["faces" if "faces" in name else "rules"].setdefault(rule, {"abs_k_error": [], "nmi": []})
            agg["abs_k_error"].append(abs(row[rule]["k"] - true_k))
            agg["nmi"].append(row[rule]["nmi"])
        row["nmi at the true k"] = {
            method: round(cluster_quality([int(v) for v in labels], truth)["nmi"], 3)
            for method, labels in at_true_k(_unit(vecs), true_k).items()
        }
        report["sets"][name] = row
        print(json.dumps({name: row}), flush=True)
    for part in ("rules", "faces"):
        for agg in report[part].values():
            agg["mean_abs_k_error"] = round(float(np.mean(agg["abs_k_error"])), 2)
            agg["mean_nmi"] = round(float(np.mean(agg["nmi"])), 3)
    print(json.dumps({"image sets, per rule": report["rules"], "faces, per rule": report["faces"]}))


if __name__ == "__main__":
    main()
