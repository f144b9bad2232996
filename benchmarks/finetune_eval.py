"""Fine-tuning methods side by side: before/after kNN top-1, macro-F1 and mAP@R on the same leak-free test split.

Usage: ``python benchmarks/finetune_eval.py [DATASET ...] [--methods linear,mlp,...] [--work DIR] [--seed 0]``
(``triplet/batch-hard`` names a triplet miner; plain ``triplet`` mines semi-hard)
(datasets default to ``../shared/data/naruto_roboflow`` and ``../shared/data/cifar10_subset``). Each dataset is
indexed once with the default encoder into ``--work`` (reused by later runs), split with ``--split-field auto``
(the manifest's ``grouped_split`` when present, else a near-duplicate-grouped split), then every method trains
on the cached vectors. Prints one table per dataset (figures as %, ratio after/before, training seconds, the load
average while training) and the JSON of every run at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from visrec.train import FinetuneConfig, LoopConfig, LossOptions, finetune, finetune_lit
from visrec.train.run import LIT, prepare_index

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_DATA = [SHARED / "naruto_roboflow", SHARED / "cifar10_subset"]
METHODS = ("linear", "mlp", "arcface", "triplet", "triplet/batch-hard", "infonce", "supcon", LIT)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}"


def run_one(index: Path, method: str, seed: int) -> dict[str, Any]:
    """Train ``method`` on ``index``; the figures before and after, seconds, and the load average meanwhile."""
    name, _, miner = method.partition("/")
    cfg = FinetuneConfig(method=name, loss=LossOptions(miner=miner or "semi-hard"), loop=LoopConfig(seed=seed))
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        res = finetune_lit(index, cfg) if name == LIT else finetune(index, cfg)
    except Exception as e:  # a collapse or a failure is a result of the benchmark, not a crash of it
        return {"method": method, "error": f"{type(e).__name__}: {e}"}
    return {
        "method": method,
        "before": res.before,
        "after": res.after,
        "after_head": res.after_head,
        "seconds": round(time.perf_counter() - t0, 1),
        "train_seconds": round(res.training.seconds, 1),
        "epochs": res.training.epochs,
        "best_epoch": res.training.best_epoch,
        "load": round((load0 + os.getloadavg()[0]) / 2, 2),
        "split": res.split,
    }


def print_table(name: str, runs: list[dict[str, Any]]) -> None:
    print(f"\n{name}")
    head = f"{'method':18} {'top1 b':>7} {'top1 a':>7} {'F1 b':>6} {'F1 a':>6} {'mAP b':>6} {'mAP a':>6}"
    print(head + f" {'mAP a/b':>7} {'head top1':>9} {'head F1':>7} {'train s':>7} {'epochs':>6} {'load':>5}")
    for r in runs:
        if "error" in r:
            print(f"{r['method']:18} failed: {r['error']}")
            continue
        if r["method"] == LIT:
            b, a = r["before"], r["after"]
            print(f"{'lit':18} text->image R@1 {_pct(b.get('t2i_r_at_1'))} -> {_pct(a['t2i_r_at_1'])}, R@5 "
                  f"{_pct(b.get('t2i_r_at_5'))} -> {_pct(a['t2i_r_at_5'])}, mAP@R {_pct(b.get('t2i_map_at_r'))} -> "
                  f"{_pct(a['t2i_map_at_r'])}; image->text top-1 {_pct(b.get('i2t_top1'))} -> {_pct(a['i2t_top1'])}"
                  f", macro-F1 {_pct(b.get('i2t_macro_f1'))} -> {_pct(a['i2t_macro_f1'])}; {r['train_seconds']} s, "
                  f"load {r['load']}")  # fmt: skip
            continue
        b, a, h = r["before"], r["after"], r["after_head"] or {}
        ratio = a["map_at_r"] / b["map_at_r"] if b["map_at_r"] else float("nan")
        print(f"{r['method']:18} {_pct(b['top1']):>7} {_pct(a['top1']):>7} {_pct(b['macro_f1']):>6} "
              f"{_pct(a['macro_f1']):>6} {_pct(b['map_at_r']):>6} {_pct(a['map_at_r']):>6} {ratio:7.2f} "
              f"{_pct(h.get('top1')):>9} {_pct(h.get('macro_f1')):>7} {r['train_seconds']:7.1f} "
              f"{r['epochs']:6d} {r['load']:5.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="*", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--work", type=Path, default=Path(".cache/finetune-bench"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = {}
    for ds in args.datasets:
        t0 = time.perf_counter()
        index = prepare_index(ds, args.work / f"{ds.name}.vrx")
        print(f"{ds.name}: index ready in {time.perf_counter() - t0:.1f} s")
        runs = [run_one(index, m.strip(), args.seed) for m in args.methods.split(",") if m.strip()]
        split = next((r["split"] for r in runs if "split" in r), {})
        title = f"{ds.name}  ({split.get('rule')}: {split.get('train')} train, {split.get('val')} val, "
        title += f"{split.get('test')} test)  b = frozen encoder, a = adapted; kNN k=10 over train+val"
        print_table(title, runs)
        results[ds.name] = runs
    print("\n" + json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
