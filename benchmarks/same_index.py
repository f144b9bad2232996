"""`visrec index` from an earlier revision and from this checkout: are the two index folders the same, bit for bit?

Usage::

    python benchmarks/same_index.py --before REV [--data ../shared/data/naruto_roboflow] [--repeat 2] [--calibrate]

Checks that a change to the indexing pipeline's speed left its results alone. ``REV``'s ``src/`` is unpacked from
this repository's git history (as ``store_stage.py`` does); each revision indexes the same folder (every image of
``--data`` ``--repeat`` times under distinct names) with ``visrec index --no-calibrate`` (``--calibrate``: with the
calibration too) in its own process, at the precision ``$VISREC_PRECISION`` selects. Then every file of the two
committed generations (stored vectors, joint vectors, metadata, prototypes, calibration) is compared byte for byte,
``.npz`` files array by array (their zip records when it was written) and ``manifest.json`` with its
``created`` / ``updated`` times left out. Prints each differing file; exits 1 when
any differs.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TIMES = ("created", "updated")


def build(src: Path, data: Path, out: Path, calibrate: bool) -> None:
    """``visrec index data --out out`` with visrec imported from ``src``."""
    code = "import sys; from visrec.cli import app; sys.argv[0] = 'visrec'; app()"
    cmd = [sys.executable, "-c", code, "index", str(data), "--out", str(out)]
    cmd += [] if calibrate else ["--no-calibrate"]
    subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(src)}, check=True, capture_output=True)


def manifest_facts(path: Path) -> Any:
    """``manifest.json`` without the times it was written at (they differ between any two builds)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in TIMES}
        return [strip(v) for v in node] if isinstance(node, list) else node

    return strip(json.loads(path.read_text()))


def npz_bytes(path: Path) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """Each array of an ``.npz`` file as (dtype, shape, raw bytes): the zip around them records when it was written."""
    with np.load(path, allow_pickle=False) as z:
        return {k: (str(z[k].dtype), z[k].shape, z[k].tobytes()) for k in z.files}


def differences(a: Path, b: Path) -> list[str]:
    """Files of index folders ``a`` and ``b`` (their committed generations and manifest) that differ."""
    files = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "work" not in p.relative_to(a).parts}
    files |= {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "work" not in p.relative_to(b).parts}
    out = []
    for rel in sorted(files - {Path(".lock")}):
        pa, pb = a / rel, b / rel
        if not (pa.exists() and pb.exists()):
            out.append(f"{rel}: only in {'before' if pa.exists() else 'after'}")
        elif rel == Path("manifest.json"):
            if manifest_facts(pa) != manifest_facts(pb):
                out.append(f"{rel}: differs (times left out)")
        elif rel.suffix == ".npz":
            if npz_bytes(pa) != npz_bytes(pb):
                out.append(f"{rel}: arrays differ")
        elif pa.read_bytes() != pb.read_bytes():
            out.append(f"{rel}: differs")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision to compare with (e.g. a commit hash)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "naruto_roboflow")
    ap.add_argument("--repeat", type=int, default=2, help="index each image this many times")
    ap.add_argument("--calibrate", action="store_true", help="also run the open-set calibration")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from indexing_speed import repeated_folder
    from store_stage import earlier_checkout

    with tempfile.TemporaryDirectory(prefix="visrec-same-") as tmp:
        root = Path(tmp)
        (root / "before").mkdir()
        before = earlier_checkout(args.before, root / "before") / "src"
        data = repeated_folder(args.data.resolve(), max(1, args.repeat), root / "data")
        build(before, data, root / "before.vrx", args.calibrate)
        build(REPO / "src", data, root / "after.vrx", args.calibrate)
        files = sum(1 for p in (root / "after.vrx").rglob("*") if p.is_file())
        diff = differences(root / "before.vrx", root / "after.vrx")
    precision = os.environ.get("VISREC_PRECISION") or "f32 (default)"
    print(f"data: {args.data} x{args.repeat}; precision {precision}; before = {args.before}, after = this checkout")
    for line in diff:
        print(line)
    print(f"{files} files compared: {'SAME' if not diff else f'{len(diff)} DIFFER'}")
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
