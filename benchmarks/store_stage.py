"""`visrec index` against an earlier revision of visrec, side by side: whole build and each stage (store above all).

Usage::

    python benchmarks/store_stage.py --before REV [--data ../shared/data/naruto_roboflow] [--repeat 5] [--rounds 2]
        [--precision f32|bf16]

``REV``'s ``src/`` and ``benchmarks/`` are taken from this repository's git history (``git archive``) into a
temporary folder; each round runs ``benchmarks/indexing_speed.py --part visrec`` (three ``build_index`` calls in
a fresh process, default encoder and runtime; the first call pays the lazy imports, the best of the next two
counts) once from that folder and once from this checkout, alternating, on the same folder (every image of
``--data`` ``--repeat`` times under distinct names, as ``indexing_speed.py`` indexes it). The best round of each
counts (other load only slows a round down). Printed: each round, then the whole build and every stage (scan,
embed, store, commit; each its best over the rounds) before and after with the ratio. The store stage is where
the calibration runs. ``--precision`` sets ``VISREC_PRECISION`` for both sides (unset: the environment's, else
float32).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def earlier_checkout(rev: str, dest: Path) -> Path:
    """``rev``'s ``src/`` and ``benchmarks/`` unpacked under ``dest`` (returned): its ``indexing_speed.py`` puts
    its own ``src/`` first on the import path."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "src", "benchmarks"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def run_visrec(root: Path, data: Path, precision: str | None = None) -> dict[str, Any]:
    """``ROOT/benchmarks/indexing_speed.py --part visrec`` (visrec imported from ``ROOT/src``, ``VISREC_PRECISION``
    set to ``precision`` when given): its JSON result."""
    cmd = [sys.executable, str(root / "benchmarks" / "indexing_speed.py"), "--part", "visrec", "--data", str(data)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if precision is not None:
        env["VISREC_PRECISION"] = precision
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision to compare with (e.g. a commit hash)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "naruto_roboflow")
    ap.add_argument("--repeat", type=int, default=5, help="index each image this many times")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--precision", choices=("f32", "bf16"), help="VISREC_PRECISION for both sides")
    args = ap.parse_args()
    args.data = args.data.resolve()  # the repeated folder links to it
    if not args.data.exists():
        sys.exit(f"{args.data} not found; pass --data DIR (a labeled image folder)")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from indexing_speed import repeated_folder

    best: dict[str, dict[str, Any]] = {}
    stage_best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="visrec-store-") as tmp:
        (Path(tmp) / "before").mkdir()
        sources = {"before": earlier_checkout(args.before, Path(tmp) / "before"), "after": REPO}
        data = repeated_folder(args.data, max(1, args.repeat), Path(tmp) / "data")
        for r in range(args.rounds):
            for name, src in sources.items():
                res = run_visrec(src, data, args.precision)
                print(f"round {r + 1} {name}: build {res['steady_s']:.2f} s, stages {res['steady_stages']}", flush=True)
                if name not in best or res["steady_s"] < best[name]["steady_s"]:
                    best[name] = res
                for stage, took in res["steady_stages"].items():
                    stage_best[name][stage] = min(took, stage_best[name].get(stage, float("inf")))
    before, after = best["before"], best["after"]
    precision = args.precision or os.environ.get("VISREC_PRECISION") or "f32 (default)"
    print(f"data: {args.data} x{args.repeat} ({after['n']} files), precision {precision}; before = {args.before}, "
          "after = this checkout")  # fmt: skip
    rows = [("build", before["steady_s"], after["steady_s"])]
    rows += [(k, stage_best["before"][k], v) for k, v in stage_best["after"].items() if k in stage_best["before"]]
    for name, b, a in rows:
        print(f"{name:<8} before {b:7.2f} s  after {a:7.2f} s  RATIO before/after {b / a if a else float('nan'):.2f}x")
    print(f"images/s: before {before['img_s']:.1f}, after {after['img_s']:.1f}")


if __name__ == "__main__":
    main()
