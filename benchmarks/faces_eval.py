"""Face detectors side by side, then verification, identification, clustering and score fusion on deepface_celebs.

Usage: ``python benchmarks/faces_eval.py [DATA_DIR] [--detectors blazeface,dlib-hog] [--embedder dlib-resnet]
[--encoder efficientnet-lite0] [--draw DIR] [--fit-box]`` (DATA_DIR defaults to ``../shared/data/deepface_celebs``).
Prints one JSON object: per detector the faces found in each multi-face photo, detection ms per image and the
recognition figures; then the fusion of the face embedding's similarity with the general encoder's similarity on
the face crop (each alone and fused, the fusion weights fitted out-of-fold by 5-fold cross-validation).

``--embedders dlib-resnet,facenet-512`` instead compares face embedders side by side on the same faces (found once
by the first detector): verification, rank-1, clustering and embedding ms per face, with ratios to the first.

``--open-set K`` instead measures what ``faces index`` stores and how identification treats strangers: each
photo's face as ``faces index`` keeps it; folds of K people left out of a face index of the others, whose photos
are then identified (share named, by the stored open-set rule and by the per-pair rule at FAR 1e-3); the same
photos cut to tight face crops (the box of their face), detected the old way (plain, largest face) and as
``faces index`` does now (padded, main face), counting false faces stored and detections dropped; and dlib's raw
Euclidean distance against the cosine distance of the normalised descriptors (``--dlib-scale`` alone).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from visrec.cluster import ClusterConfig, cluster, cluster_quality
from visrec.data import load_image
from visrec.faces import FACE_DETECTORS, FACE_EMBEDDERS, FacePipeline, Faces, create_face_pipeline
from visrec.faces.calibrate import best_accuracy, calibrate, distance_matrix, pair_distances
from visrec.faces.fusion import face_crops, fit_fusion
from visrec.faces.openset import calibrate_open_set
from visrec.faces.pipeline import DEFAULT_THRESHOLDS, PhotoFaces

Vecs = dict[str, np.ndarray]


def embed_all(root: Path, pipe: FacePipeline) -> tuple[Vecs, dict[str, np.ndarray], float]:
    """Largest-face embedding and crop of every labeled photo (keyed by relative path), and detection s/image."""
    vecs: Vecs = {}
    crops: dict[str, np.ndarray] = {}
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    spent = 0.0
    for r in rows:
        image = load_image(root / r["path"])
        t = time.perf_counter()
        faces = pipe.detector.detect(image).largest()
        spent += time.perf_counter() - t
        if len(faces):
            vecs[r["path"]] = pipe.embedder.embed(image, faces)[0]
            crops[r["path"]] = face_crops(image, faces)[0]
    return vecs, crops, spent / len(rows)


def read_pairs(root: Path, vecs: Vecs) -> tuple[list[dict[str, str]], np.ndarray]:
    """The pairs of pairs.csv whose both photos have a face, and their same-person flags."""
    pairs = [p for p in csv.DictReader((root / "pairs.csv").open()) if p["path_a"] in vecs and p["path_b"] in vecs]
    return pairs, np.array([p["same"] == "1" for p in pairs])


def similarities(pairs: list[dict[str, str]], vecs: Vecs) -> np.ndarray:
    """Cosine similarity of each pair."""
    return np.array(
        [1.0 - float(distance_matrix(vecs[p["path_a"]][None], vecs[p["path_b"]][None])[0, 0]) for p in pairs]
    )


def verification(d: np.ndarray, same: np.ndarray) -> dict[str, Any]:
    """AUC, EER, TAR at FAR, best accuracy (optimistic) and 5-fold cross-validated accuracy of distances ``d``."""
    cal = calibrate(d, same)
    folds = np.arange(len(d)) % 5
    correct = 0
    for f in range(5):
        _, thr = best_accuracy(d[folds != f], same[folds != f])
        correct += int(((d[folds == f] <= thr) == same[folds == f]).sum())
    return {
        "pairs": len(d), "auc": round(cal.auc, 6), "eer": round(cal.eer, 6), "best_accuracy": round(cal.accuracy, 4),
        "cv5_accuracy": round(correct / len(d), 4), "tar_at_far": cal.tar_at_far,
    }  # fmt: skip


def identification(vecs: Vecs) -> dict[str, float]:
    """One gallery photo per person (the first in sorted order), every other photo a probe: rank-1."""
    by: dict[str, list[str]] = {}
    for path in sorted(vecs):
        by.setdefault(path.split("/")[1], []).append(path)
    gallery = [(lab, ps[0]) for lab, ps in by.items()]
    probes = [(lab, p) for lab, ps in by.items() for p in ps[1:]]
    nearest = distance_matrix(np.array([vecs[p] for _, p in probes]), np.array([vecs[p] for _, p in gallery]))
    hits = sum(gallery[j][0] == lab for j, (lab, _) in zip(nearest.argmin(1), probes, strict=True))
    return {"rank1": hits / len(probes), "hits": hits, "probes": len(probes), "gallery": len(gallery)}


def clustering(vecs: Vecs, threshold: float) -> dict[str, dict[str, float]]:
    """Purity / NMI / ARI at the true k and with automatic k, per method."""
    x = np.array(list(vecs.values()))
    truth = [p.split("/")[1] for p in vecs]
    k = len(set(truth))
    cfgs = {
        "agglomerative_true_k": ClusterConfig("agglomerative", k=k),
        "kmeans_true_k": ClusterConfig("kmeans", k=k),
        "agglomerative_auto_k_silhouette": ClusterConfig("agglomerative"),
        "agglomerative_auto_k_threshold": ClusterConfig("agglomerative", distance_threshold=threshold),
        "kmeans_auto_k": ClusterConfig("kmeans"),
        "hdbscan": ClusterConfig("hdbscan", min_cluster_size=2),
    }
    out = {}
    for name, cfg in cfgs.items():
        q = cluster_quality(cluster(x, cfg).tolist(), truth)
        out[name] = {m: round(v, 4) for m, v in q.items()}
    return out


def multiface(root: Path, pipe: FacePipeline, draw: Path | None) -> dict[str, Any]:
    """Faces found in each unlabeled multi-face photo and detection ms per photo (optionally drawn to ``draw``)."""
    from PIL import Image, ImageDraw

    found, ms = {}, {}
    for p in sorted((root / "unlabeled_multiface").glob("*.jpg")):
        image = load_image(p)
        t = time.perf_counter()
        faces = pipe.detector.detect(image)
        ms[p.name] = round(1000 * (time.perf_counter() - t), 1)
        found[p.name] = len(faces)
        if draw is not None:
            im = Image.fromarray(image)
            pen, r = ImageDraw.Draw(im), max(2, im.width // 250)
            for box, pts in zip(faces.xyxy, faces.landmarks, strict=True):
                pen.rectangle([float(v) for v in box], outline=(255, 0, 0), width=r)
                for x, y in pts:
                    pen.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0))
            draw.mkdir(parents=True, exist_ok=True)
            im.save(draw / f"{pipe.detector.name}_{p.stem}.png")
    return {"faces": found, "detect_ms": ms}


def fusion(pairs: list[dict[str, str]], same: np.ndarray, face: Vecs, general: Vecs) -> dict[str, Any]:
    """Face similarity, general-encoder similarity and their logistic fusion (fitted out-of-fold, 5 folds)."""
    s = np.c_[similarities(pairs, face), similarities(pairs, general)]
    folds = np.arange(len(s)) % 5
    fused = np.zeros(len(s))
    for f in range(5):
        model = fit_fusion(s[folds != f], same[folds != f], ("face", "general"))
        fused[folds == f] = model.distance(s[folds == f])
    full = fit_fusion(s, same, ("face", "general"))
    return {
        "face_alone": verification(1.0 - s[:, 0], same),
        "general_alone": verification(1.0 - s[:, 1], same),
        "fused_out_of_fold": verification(fused, same),
        "weights_all_pairs": dict(zip(full.names, [round(w, 3) for w in full.weights], strict=True)),
    }


def fit_box(root: Path) -> dict[str, float]:
    """How dlib-hog's boxes sit relative to BlazeFace's on the same faces (the ``DLIB_BOX`` mapping)."""
    from visrec.faces import FACE_DETECTORS
    from visrec.faces.ssd import iou

    hog, bf = FACE_DETECTORS.create("dlib-hog"), FACE_DETECTORS.create("blazeface", landmarks="blaze6")
    shift, size = [], []
    for r in csv.DictReader((root / "manifest.csv").open()):
        image = load_image(root / r["path"])
        a, b = hog.detect(image), bf.detect(image)
        for box in a.xyxy if len(b) else []:
            o = iou(box, b.xyxy)
            if o.max() > 0.3:
                m = b.xyxy[int(o.argmax())]
                wh = m[2:] - m[:2]
                shift.append(((box[:2] + box[2:]) - (m[:2] + m[2:])) / 2 / wh)
                size.append(float((box[2:] - box[:2]).mean() / wh.mean()))
    dx, dy = np.median(shift, axis=0)
    return {
        "matched": len(size),
        "dx": round(float(dx), 3),
        "dy": round(float(dy), 3),
        "size": round(float(np.median(size)), 3),
    }


def general_vectors(crops: dict[str, np.ndarray], encoder_name: str) -> tuple[Vecs, dict[str, Any]]:
    """The general image encoder's vector of every face crop."""
    from visrec.encoders import create_encoder

    enc = create_encoder(encoder_name)
    keys = list(crops)
    emb = enc.encode_images([crops[k] for k in keys], ids=keys)
    return dict(zip(keys, emb.vectors, strict=True)), {"name": enc.name, "fingerprint": enc.fingerprint}


def separation(d: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """Cosine distances of same / different pairs: extremes, the EER threshold and d' (gap in pooled std units)."""
    a, b = d[same], d[~same]
    return {
        "max_same": round(float(a.max()), 4), "min_different": round(float(b.min()), 4),
        "eer_threshold": round(calibrate(d, same).eer_threshold, 4),
        "d_prime": round(float((b.mean() - a.mean()) / np.sqrt((a.var() + b.var()) / 2)), 3),
    }  # fmt: skip


def detect_once(root: Path, detector: str) -> dict[str, Faces]:
    """The largest face of every labeled photo that has one (keyed by relative path)."""
    det = FACE_DETECTORS.create(detector)
    found = {}
    for r in csv.DictReader((root / "manifest.csv").open()):
        faces = det.detect(load_image(root / r["path"])).largest()
        if len(faces):
            found[r["path"]] = faces
    return found


def compare_embedders(root: Path, detector: str, names: list[str]) -> dict[str, Any]:
    """Recognition figures and embedding ms per face of each embedder on the same detected faces."""
    found = detect_once(root, detector)
    out: dict[str, Any] = {"detector": detector, "faces": len(found)}
    embedders = {name: FACE_EMBEDDERS.create(name) for name in names}
    vecs_of: dict[str, Vecs] = {name: {} for name in names}
    spent = dict.fromkeys(names, 0.0)
    for path, faces in found.items():
        image = load_image(root / path)
        for name, emb in embedders.items():  # interleaved, so a change in machine load hits all alike
            t = time.perf_counter()
            vecs_of[name][path] = emb.embed(image, faces)[0]
            spent[name] += time.perf_counter() - t
    for name, emb in embedders.items():
        vecs = vecs_of[name]
        pairs, same = read_pairs(root, vecs)
        d = 1 - similarities(pairs, vecs)
        threshold = DEFAULT_THRESHOLDS.get(name, 0.3)
        out[name] = {
            "embedder": emb.describe(), "embed_ms_per_face": round(1000 * spent[name] / len(found), 1),
            "verification": verification(d, same), "separation": separation(d, same),
            "identification": identification(vecs), "clustering": clustering(vecs, threshold),
        }  # fmt: skip
    base = out[names[0]]
    out["ratios_to_" + names[0]] = {
        n: {"embed_ms_per_face": round(out[n]["embed_ms_per_face"] / base["embed_ms_per_face"], 2)} for n in names[1:]
    }
    return out


def labeled_faces(root: Path, pipe: FacePipeline) -> dict[str, tuple[str, PhotoFaces]]:
    """``path -> (person, faces kept)`` for every labeled photo where ``faces index`` keeps a face."""
    out = {}
    for r in csv.DictReader((root / "manifest.csv").open()):
        found = pipe.find_labeled(load_image(root / r["path"]))
        if len(found.faces):
            out[r["path"]] = (r["label"], found)
    return out


def open_set(found: dict[str, tuple[str, PhotoFaces]], k: int, fpir: float) -> dict[str, Any]:
    """Strangers named by a face index of the other people: folds of ``k`` people left out in turn."""
    labels = [lab for lab, _ in found.values()]
    vecs = np.array([f.vectors[0] for _, f in found.values()])
    people = sorted(set(labels))
    n_folds = -(-len(people) // k)
    named = {"open_set": 0, "pair_far_0.001": 0}
    probes, fnir = 0, []
    for j in range(n_folds):
        out = set(people[j::n_folds])
        g = np.array([lab not in out for lab in labels])
        glab = [lab for lab in labels if lab not in out]
        ident = calibrate_open_set(vecs[g], glab, fpir)
        fnir.append(ident.fnir)
        dist, same = pair_distances(vecs[g], glab)
        nearest = distance_matrix(vecs[~g], vecs[g]).min(1)
        named["open_set"] += int((nearest <= ident.threshold).sum())
        named["pair_far_0.001"] += int((nearest <= calibrate(dist, same, 1e-3).threshold).sum())
        probes += int((~g).sum())
    return {
        "people": len(people), "left_out_per_fold": k, "folds": n_folds, "stranger_probes": probes,
        "target_fpir": fpir, "strangers_named": {m: round(n / probes, 4) for m, n in named.items()},
        "fnir_in_gallery_mean": round(float(np.mean(fnir)), 4),
    }  # fmt: skip


def tight_crops(root: Path, found: dict[str, tuple[str, PhotoFaces]], pipe: FacePipeline) -> dict[str, Any]:
    """Each photo cut to its face's box: false faces stored by the old and the current ``faces index`` rule."""
    old = {"false_face_stored": 0, "no_face": 0, "extra_detections_kept_with_all_faces": 0}
    new = {"false_face_stored": 0, "no_face": 0, "dropped_reported": 0}
    for path, (_, f) in found.items():
        image = load_image(root / path)
        x0, y0, x1, y1 = (round(float(c)) for c in f.faces.xyxy[0])
        crop = np.ascontiguousarray(image[max(0, y0) : y1, max(0, x0) : x1])
        side = min(crop.shape[:2])
        plain = pipe.detector.detect(crop)
        old["no_face"] += int(len(plain) == 0)
        old["false_face_stored"] += int(len(plain) > 0 and float(np.sqrt(plain.areas.max())) < side / 2)
        old["extra_detections_kept_with_all_faces"] += max(0, len(plain) - 1)
        now = pipe.find_labeled(crop)
        new["no_face"] += int(len(now.faces) == 0)
        new["false_face_stored"] += int(len(now.faces) > 0 and float(np.sqrt(now.faces.areas[0])) < side / 2)
        new["dropped_reported"] += now.dropped
    return {"crops": len(found), "old_plain_largest": old, "faces_index_now": new}


def dlib_scale(root: Path, found: dict[str, tuple[str, PhotoFaces]]) -> dict[str, Any]:
    """dlib's raw Euclidean distance vs the cosine distance of the normalised descriptors, over all photo pairs."""
    from visrec.faces.dlib_backend import DlibResNetEmbedder

    emb = DlibResNetEmbedder()
    raw = np.array([emb.embed_raw(load_image(root / p), f.faces)[0] for p, (_, f) in found.items()], np.float64)
    iu = np.triu_indices(len(raw), k=1)
    euclid = distance_matrix(raw, raw, "euclidean")[iu]
    cos = distance_matrix(raw, raw)[iu]
    near = np.abs(euclid - 0.6) <= 0.05
    return {
        "pairs": len(euclid), "raw_norm_median": round(float(np.median(np.linalg.norm(raw, axis=1))), 4),
        "cosine_median_at_raw_0.55_0.65": round(float(np.median(cos[near])), 4), "pairs_there": int(near.sum()),
        "raw_same_rule_0.6_as_cosine_fit": round(float(np.interp(0.6, np.sort(euclid), np.sort(cos))), 4),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[1].parent / "shared/data/deepface_celebs"
    ap.add_argument("data", nargs="?", default=str(default))
    ap.add_argument("--detectors", default="blazeface,dlib-hog", help="comma-separated; the first one is fused")
    ap.add_argument("--embedder", default="dlib-resnet")
    ap.add_argument("--encoder", default="efficientnet-lite0", help="general image encoder fused with the faces")
    ap.add_argument("--draw", type=Path, default=None, help="write the multi-face photos with boxes here")
    ap.add_argument("--fit-box", action="store_true", help="also measure the BlazeFace -> dlib box mapping")
    ap.add_argument("--embedders", default=None, help="comma-separated: only compare these embedders side by side")
    ap.add_argument("--open-set", type=int, default=0, help="people left out per fold (0: skip this evaluation)")
    ap.add_argument("--fpir", type=float, default=1e-2, help="target FPIR of the open-set rule")
    ap.add_argument("--dlib-scale", action="store_true", help="only compare dlib's raw and cosine distances")
    args = ap.parse_args()
    root = Path(args.data)
    if args.open_set or args.dlib_scale:
        pipe = create_face_pipeline(args.detectors.split(",")[0], args.embedder)
        found = labeled_faces(root, pipe)
        res: dict[str, Any] = {"pipeline": pipe.describe(), "photos_with_face": len(found)}
        if args.open_set:
            res["open_set"] = open_set(found, args.open_set, args.fpir)
            res["tight_crops"] = tight_crops(root, found, pipe)
        res["dlib_scale"] = dlib_scale(root, found) if args.embedder == "dlib-resnet" else None
        print(json.dumps(res, indent=1))
        return
    if args.embedders:
        names = args.embedders.split(",")
        print(json.dumps(compare_embedders(root, args.detectors.split(",")[0], names), indent=1))
        return
    result: dict[str, Any] = {"detectors": {}}
    first: tuple[Vecs, dict[str, np.ndarray]] | None = None
    for name in args.detectors.split(","):
        pipe = create_face_pipeline(name, args.embedder)
        vecs, crops, per_image = embed_all(root, pipe)
        pairs, same = read_pairs(root, vecs)
        first = first or (vecs, crops)
        result["detectors"][name] = {
            "pipeline": pipe.describe(), "images_with_face": len(vecs), "detect_ms_per_image": round(1000 * per_image),
            "multiface": multiface(root, pipe, args.draw),
            "verification": verification(1 - similarities(pairs, vecs), same),
            "identification": identification(vecs), "clustering": clustering(vecs, pipe.default_threshold),
        }  # fmt: skip
    if first is not None:
        vecs, crops = first
        general, info = general_vectors(crops, args.encoder)
        pairs, same = read_pairs(root, vecs)
        result["fusion"] = {"detector": args.detectors.split(",")[0], "encoder": info} | fusion(
            pairs, same, vecs, general
        )
    if args.fit_box:
        result["box_fit"] = fit_box(root)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
