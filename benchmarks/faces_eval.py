"""Face verification, identification, clustering and multi-face detection on deepface_celebs.

Usage: ``python benchmarks/faces_eval.py [DATA_DIR] [--detector dlib-hog] [--embedder dlib-resnet]``
(DATA_DIR defaults to ``../shared/data/deepface_celebs``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from visrec.cluster import ClusterConfig, cluster, cluster_quality
from visrec.data import load_image
from visrec.faces import FacePipeline, create_face_pipeline
from visrec.faces.calibrate import best_accuracy, calibrate, distance_matrix


def embed_all(root: Path, pipe: FacePipeline) -> tuple[dict[str, np.ndarray], float]:
    """Largest-face embedding of every labeled photo (keyed by path relative to ``root``), and s/image."""
    out: dict[str, np.ndarray] = {}
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    t = time.perf_counter()
    for r in rows:
        _, v = pipe.find(load_image(root / r["path"]), largest_only=True)
        if len(v):
            out[r["path"]] = v[0]
    return out, (time.perf_counter() - t) / len(rows)


def verification(root: Path, vecs: dict[str, np.ndarray]) -> dict[str, float]:
    """Pairs of pairs.csv: AUC, EER, best accuracy (optimistic) and 5-fold cross-validated accuracy."""
    pairs = [p for p in csv.DictReader((root / "pairs.csv").open()) if p["path_a"] in vecs and p["path_b"] in vecs]
    d = np.array([float(distance_matrix(vecs[p["path_a"]][None], vecs[p["path_b"]][None])[0, 0]) for p in pairs])
    same = np.array([p["same"] == "1" for p in pairs])
    cal = calibrate(d, same)
    folds = np.arange(len(d)) % 5
    correct = 0
    for f in range(5):
        _, thr = best_accuracy(d[folds != f], same[folds != f])
        correct += int(((d[folds == f] <= thr) == same[folds == f]).sum())
    return {
        "pairs": len(d), "auc": cal.auc, "eer": cal.eer, "best_accuracy": cal.accuracy,
        "cv5_accuracy": correct / len(d), "threshold_best": cal.accuracy_threshold, "tar_at_far": cal.tar_at_far,
    }  # fmt: skip


def identification(vecs: dict[str, np.ndarray]) -> dict[str, float]:
    """One gallery photo per person (the first in sorted order), every other photo a probe: rank-1."""
    by: dict[str, list[str]] = {}
    for path in sorted(vecs):
        by.setdefault(path.split("/")[1], []).append(path)
    gallery = [(lab, ps[0]) for lab, ps in by.items()]
    probes = [(lab, p) for lab, ps in by.items() for p in ps[1:]]
    g = np.array([vecs[p] for _, p in gallery])
    q = np.array([vecs[p] for _, p in probes])
    nearest = distance_matrix(q, g).argmin(1)
    hits = sum(gallery[j][0] == lab for j, (lab, _) in zip(nearest, probes, strict=True))
    return {"rank1": hits / len(probes), "probes": len(probes), "gallery": len(gallery)}


def clustering(vecs: dict[str, np.ndarray], k: int) -> dict[str, dict[str, float]]:
    """Purity / NMI / ARI at the true k and with automatic k, per method."""
    x = np.array(list(vecs.values()))
    truth = [p.split("/")[1] for p in vecs]
    cfgs = {
        "agglomerative_true_k": ClusterConfig("agglomerative", k=k),
        "kmeans_true_k": ClusterConfig("kmeans", k=k),
        "agglomerative_auto_k": ClusterConfig("agglomerative"),
        "kmeans_auto_k": ClusterConfig("kmeans"),
        "hdbscan": ClusterConfig("hdbscan", min_cluster_size=2),
    }
    return {name: cluster_quality(cluster(x, cfg), truth) for name, cfg in cfgs.items()}


def multiface(root: Path, pipe: FacePipeline) -> dict[str, int]:
    """Number of faces found in each unlabeled multi-face photo."""
    folder = root / "unlabeled_multiface"
    return {p.name: len(pipe.detector.detect(load_image(p))) for p in sorted(folder.glob("*.jpg"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "data", nargs="?", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/deepface_celebs")
    )
    ap.add_argument("--detector", default="dlib-hog")
    ap.add_argument("--embedder", default="dlib-resnet")
    args = ap.parse_args()
    root = Path(args.data)
    pipe = create_face_pipeline(args.detector, args.embedder)
    vecs, per_image = embed_all(root, pipe)
    k = len({p.split("/")[1] for p in vecs})
    result = {
        "pipeline": pipe.describe(), "images_with_face": len(vecs), "seconds_per_image": round(per_image, 3),
        "verification": verification(root, vecs), "identification": identification(vecs),
        "clustering": clustering(vecs, k), "multiface": multiface(root, pipe),
    }  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
