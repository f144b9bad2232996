"""Zero-shot and blend with renamed classes, scored against the dataset's labels, on a labeled test split.

Usage: ``python benchmarks/zeroshot_renamed.py INDEX [--data ../shared/data/caltech101_dev/manifest.csv]
[--where 'split == "test"']``. Each label gets a prompt name a user would type: lower case, ``_`` -> space,
a plural ``s`` dropped (``Motorbikes`` -> ``motorbike``, ``car_side`` -> ``car side``).
The test images are encoded once; then, uncalibrated, top-1 of:
``labels`` (the labels as prompts), ``names_unmapped`` (the names alone, scored the old way against the labels:
answers never equal a renamed label), ``mapped`` (``Label=name``: answers are labels, prompts are the names), and
blend with the mapping (how many image prototypes it keeps).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from visrec import ops
from visrec.eval import summarize
from visrec.index import Index
from visrec.index.inputs import encode_files


def top1(truths: list[tuple[str, ...]], preds: list[Any]) -> float:
    """Top-1 over every image (the old scoring: all truths count)."""
    return round(float(summarize(truths, preds).to_dict()["top1_raw"]), 4)


def natural(label: str) -> str:
    """The name a user would type for a folder label: ``Motorbikes`` -> ``motorbike``."""
    name = label.replace("_", " ").lower()
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    root = Path(__file__).resolve().parents[1].parent / "shared/data/caltech101_dev/manifest.csv"
    ap.add_argument("index", type=Path)
    ap.add_argument("--data", type=Path, default=root)
    ap.add_argument("--where", default='split == "test"')
    args = ap.parse_args()
    idx = Index(args.index)
    labels = sorted(idx.labels())
    names = {lab: natural(lab) for lab in labels}
    files, truths = ops._gather([args.data], args.where)
    emb, kept, _ = encode_files(idx, files)
    assert truths is not None
    truth = [tuple(truths[i]) for i in kept]
    mapped = [f"{lab}={name}" for lab, name in names.items()]
    blend = idx.classifier("blend", classes=mapped)
    out = {
        "images": len(truth), "classes": len(labels), "renamed": sum(n != lab for lab, n in names.items()),
        "labels": top1(truth, idx.classify(emb, "zeroshot", calibrated=False)),
        "names_unmapped": top1(truth, idx.classify(emb, "zeroshot", calibrated=False, classes=list(names.values()))),
        "mapped": top1(truth, idx.classify(emb, "zeroshot", calibrated=False, classes=mapped)),
        "blend_mapped": top1(truth, idx.classify(emb, "blend", calibrated=False, classes=mapped)),
        "blend_prototypes_kept": len(blend.image.classes),
    }  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
