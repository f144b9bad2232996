"""Raw recognition (kNN top-1) of feature-extraction and kNN-decision variants, chosen on train splits only.

Usage::

    python benchmarks/raw_variants.py embed --cache /tmp/visrec-variants [--variants lite0@224,lite0@288,...]
    python benchmarks/raw_variants.py evaluate --cache /tmp/visrec-variants

``embed`` runs each variant (``<model>@<size>[:bicubic][:none]``, model = ``lite0`` | ``lite1`` | ``lite2`` |
``mobilenet-v2``) once over every image of naruto_roboflow, cifar10_subset and caltech101_dev, on the image and
on its mirror image in the same call, and keeps every pooled stage block (GeM p=3, each block unit length) and the
ImageNet logits of both, so that flip averaging, stage choices and ensembles are all recombined afterwards without
embedding again. ``evaluate`` (see :mod:`raw_protocol`) scores every combination on the train splits
(leave-one-out inside each train split; naruto leaves the query's near-duplicate group out), picks the variant
with the best mean over the three sets, and only then prints the test figures (train gallery, test queries).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SETS = {"naruto": ("naruto_roboflow", "grouped_split"), "cifar": ("cifar10_subset", "split"),
        "caltech": ("caltech101_dev", "split")}  # fmt: skip
MODELS = {"lite0": "efficientnet-lite0", "lite1": "efficientnet-lite1", "lite2": "efficientnet-lite2",
          "mobilenet-v2": "mobilenet-v2"}  # fmt: skip
DEFAULT_VARIANTS = "lite0@224,lite0@224:none,lite0@288,lite1@256,lite0@224:bicubic,lite2@256"  # what evaluate reads


def manifest(root: Path, name: str) -> dict[str, np.ndarray]:
    """``path`` (absolute), ``label``, ``split`` (train/test of the set's leak-free column) and ``group``."""
    folder, column = SETS[name]
    rows = list(csv.DictReader((root / folder / "manifest.csv").open()))
    return {
        "path": np.array([str(root / folder / r["path"]) for r in rows]),
        "label": np.array([r["label"] for r in rows]),
        "split": np.array([r[column] for r in rows]),
        "group": np.array([r.get("dup_group") or f"#{i}" for i, r in enumerate(rows)]),
    }


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``"lite0@288:bicubic:none"`` -> ``("efficientnet-lite0", {"input_size": 288, "resample": "bicubic",
    "crop": "none"})`` (defaults: bilinear, centre crop)."""
    model, _, rest = spec.partition("@")
    size, *flags = rest.split(":")
    options: dict[str, Any] = {"input_size": int(size)}
    for flag in flags:
        options["resample" if flag in ("bilinear", "bicubic") else "crop"] = flag
    return MODELS[model], options


def embed_variant(spec: str, paths: list[str]) -> dict[str, np.ndarray]:
    """``{"orig", "flip"}``: ``(n, sum of stage widths)`` float32 rows of per-stage unit blocks (in the spec's
    stage order), ``{"orig_logits", "flip_logits"}``: ``(n, 1000)`` float16."""
    from visrec.blas import usable_cores
    from visrec.encoders import create_encoder
    from visrec.encoders.preprocess import parallel_batches

    name, options = parse_variant(spec)
    probe = create_encoder(name, bridge=False)
    stages = tuple(probe.spec.stages)  # type: ignore[attr-defined]
    enc = create_encoder(name, bridge=False, stages=stages, precision="f32", **options)
    session = enc.batch_session()  # type: ignore[attr-defined]

    def run(batch: np.ndarray) -> list[np.ndarray]:
        a = session.run(None, {"image": batch})
        b = session.run(None, {"image": np.ascontiguousarray(batch[..., ::-1])})
        return [a[0], b[0], a[1], b[1]]

    n, dim = len(paths), enc.dim
    out = {"orig": np.empty((n, dim), np.float32), "flip": np.empty((n, dim), np.float32)}
    out |= {"orig_logits": np.empty((n, 1000), np.float16), "flip_logits": np.empty((n, 1000), np.float16)}
    for start, (fa, fb, la, lb) in parallel_batches(enc.prep, paths, 4, usable_cores(), run):  # type: ignore[attr-defined]
        for key, value in zip(("orig", "flip", "orig_logits", "flip_logits"), (fa, fb, la, lb), strict=True):
            out[key][start : start + len(value)] = value
    # The graph output is the concatenation of unit blocks, renormalised: bring every block back to unit length.
    widths = [enc.spec.stages[s] for s in stages]  # type: ignore[attr-defined]
    for key in ("orig", "flip"):
        edges = np.cumsum([0, *widths])
        for a, b in itertools.pairwise(edges):
            block = out[key][:, a:b]
            block /= np.linalg.norm(block, axis=1, keepdims=True) + 1e-12
    return out | {"stages": np.array(stages), "widths": np.array(widths)}


def embed_main(args: argparse.Namespace) -> None:
    for spec in args.variants.split(","):
        for name in SETS:
            target = args.cache / spec.replace(":", "-") / f"{name}.npz"
            if target.exists():
                continue
            paths = list(manifest(args.data, name)["path"])
            start = time.perf_counter()
            arrays = embed_variant(spec, paths)
            target.parent.mkdir(parents=True, exist_ok=True)
            np.savez(target, **arrays)
            print(f"{spec:24s} {name:8s} {len(paths):5d} images {time.perf_counter() - start:6.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in ("embed", "evaluate"):
        p = sub.add_parser(cmd)
        p.add_argument("--cache", type=Path, required=True)
        p.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
        p.add_argument("--variants", default=DEFAULT_VARIANTS)
    args = parser.parse_args()
    if args.command == "embed":
        embed_main(args)
    else:
        from raw_protocol import evaluate_main

        evaluate_main(args)


if __name__ == "__main__":
    main()
