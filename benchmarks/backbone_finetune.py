"""Backbone fine-tuning (``visrec finetune --unfreeze N``) beside head-only SupCon, on the same leak-free split.

Usage::

    python benchmarks/backbone_finetune.py [--data ../shared/data/naruto_roboflow] [--work /tmp/visrec-ft]
        [--unfreeze 2,4] [--views 4] [--seconds 600]

Indexes the data set once with the default encoder (``--work/base.vrx``), then for each ``--unfreeze`` value
trains the encoder's last blocks (``visrec.train.backbone_run.finetune_encoder``) and, for comparison, the
head-only ``supcon`` method on the cached vectors; unless ``--no-head-after``, the same head-only method then
trains on the index re-encoded with each fine-tuned backbone (backbone, then head: both stages' time counted).
Prints kNN top-1 and mAP@R of the test split against train + val before and after, training seconds, peak
memory, and the load average (the CPU is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from visrec.encoders import create_encoder  # noqa: E402
from visrec.train import FinetuneConfig, finetune  # noqa: E402
from visrec.train.backbone_run import finetune_encoder, reencode_index  # noqa: E402
from visrec.train.run import SplitOptions, prepare_index  # noqa: E402
from visrec.train.tail import TailConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "naruto_roboflow")
    parser.add_argument("--work", type=Path, default=Path("/tmp/visrec-ft"))
    parser.add_argument("--unfreeze", default="2")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (the head-only run stays on the CPU)")
    parser.add_argument(
        "--no-head-after",
        dest="head_after",
        action="store_false",
        help="skip the head-only supcon run on the index re-encoded with each fine-tuned backbone",
    )
    args = parser.parse_args()
    index = prepare_index(args.data, args.work / "base.vrx")
    rows = []
    t0 = time.perf_counter()
    head = finetune(index, FinetuneConfig(method="supcon"))
    after = head.rows()
    rows.append(("head-only supcon", after[0], after[-1], time.perf_counter() - t0, os.getloadavg()[0]))
    for n in (int(x) for x in args.unfreeze.split(",")):
        out = args.work / f"unfreeze-{n}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = TailConfig(unfreeze=n, views=args.views, seconds=args.seconds, device=args.device)
        res = finetune_encoder(index, out, cfg, SplitOptions())
        rows.append((f"backbone --unfreeze {n}", res["before"], res["after"], res["seconds"], os.getloadavg()[0]))
        print(json.dumps(res["training"]), flush=True)
        print(f"  peak RSS {res['peak_rss_mb']:.0f} MB, CPU {res['cpu_seconds']:.0f} s", flush=True)
        if args.head_after:  # the same head-only method on the fine-tuned features: what the backbone adds to it
            t1 = time.perf_counter()
            tuned = reencode_index(index, create_encoder("finetuned", model=str(out)), out / "index.vrx", False)
            both = finetune(tuned["path"], FinetuneConfig(method="supcon")).rows()
            secs = res["seconds"] + time.perf_counter() - t1
            rows.append((f"backbone {n} + supcon head", res["before"], both[-1], secs, os.getloadavg()[0]))
    print(f"\n{'method':24s} {'top1 before->after':>20s} {'mAP@R before->after':>22s} {'seconds':>8s} {'load':>5s}")
    for what, b, a, secs, load in rows:
        print(
            f"{what:24s} {100 * b['top1']:8.1f} -> {100 * a['top1']:5.1f} "
            f"{100 * b['map_at_r']:10.1f} -> {100 * a['map_at_r']:5.1f} {secs:8.0f} {load:5.1f}"
        )


if __name__ == "__main__":
    main()
