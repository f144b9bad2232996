"""Indexing throughput: visrec vs a naive PyTorch loop vs the machine's compute ceiling, side by side.

Usage::

    python benchmarks/indexing_speed.py [--data ../shared/data/naruto_roboflow] [--rounds 2] [--repeat 5] [--limit N]

Each measurement runs in a fresh subprocess (so its peak memory is its own), and the parts are interleaved
``--rounds`` times; the best round of each is kept (other load on the machine only ever slows a round down).

- ``visrec``: :func:`visrec.index.writer.build_index` from the JPEG files to a saved index (default encoder, session
  created before the clock starts), three times in one process: the first call pays one-time lazy imports, the
  best of the next two is the steady state. Images/s = images / wall time of the whole call (all stages: scan
  and hash, decode, embed, store, calibration, commit). The folder indexed holds every image of ``--data``
  ``--repeat`` times under distinct names (symbolic links): 391 images index in about 3 s, too short for a
  steady state (a run that short is mostly warm-up and pipeline fill); users index thousands.
- ``visrec-vectors`` (and ``visrec-vectors-bf16`` where ``visrec-bf16`` runs): the same build with
  ``IndexConfig(calibrate=False)`` (``visrec index --no-calibrate``): vectors, hashes and metadata saved as a
  searchable index, the open-set calibration left out. The ``RATIO same precision`` lines set each visrec part
  against the fair loop at its own precision (float32 with float32, bfloat16 with bfloat16).
- ``naive``: the same model (the torch module the ONNX graph is exported from) in eager PyTorch, one image at a
  time, each decoded by PIL at full size then centre-cropped and resized, over the images of ``--data`` once
  (its per-image rate does not depend on how many there are).
- ``fair``: the loop a competent PyTorch user writes (``fair_baseline.py``): batched, ``torch.inference_mode``,
  threads set, JPEG draft decoding, a DataLoader decoding beside the model (0 or 1 worker process, the faster
  counts), glibc's allocator tuned for its process, float32 or bfloat16 autocast (the faster counts); same model
  and preprocessing as ``naive``. Also its torch model alone on ready batches. The headline ratio is visrec
  against this one.
- ``model-onnxruntime`` / ``model-openvino``: each runtime alone on ready-made batches (no decoding), the
  encoder's multi-threaded session at its best batch size: the runtime's ceiling for this graph. ``visrec``
  uses the default runtime (``$VISREC_RUNTIME``, else OpenVINO when installed) and precision
  (``$VISREC_PRECISION``: float32 by default, ``auto`` for bfloat16 on OpenVINO where the CPU computes it
  natively; ``visrec-onnxruntime`` runs float32; ``visrec-bf16``, run where the CPU computes bfloat16 natively
  and the default is not already bf16, is the opt-in ``VISREC_PRECISION=bf16`` end to end). Also printed: the
  same model through the encoder's batch path on ready-made batches (one single-threaded inference per core, as
  ``build_index`` runs it), per batch size: the ceiling of the embed stage itself. ``model-openvino-bf16``
  (where the CPU computes bfloat16 natively) is the same at bfloat16, the fastest precision that passes the gate; the
  ``BOUND`` line divides the fastest model-alone speed by the fair loop's end-to-end speed: no pipeline around this
  model (decoding, hashing and calibrating on the same cores) can beat the fair loop by more than that here.
- ``ceiling``: FLOPs per image (torch's FLOP counter on the module) and the machine's float32 matmul FLOP/s
  (best of numpy, torch, ONNX Runtime and OpenVINO on 2048x2048 matrices, all cores): "fraction of ceiling" =
  FLOPs/image x images/s / matmul FLOP/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

RUNTIMES = ("onnxruntime", "openvino")
MODEL_PARTS = tuple(f"model-{r}" for r in RUNTIMES)
VECTOR_PARTS = ("visrec-vectors", "visrec-vectors-bf16")
PARTS = ("visrec", "visrec-onnxruntime", "visrec-bf16", *VECTOR_PARTS, "naive", "fair", *MODEL_PARTS,
         "model-openvino-bf16", "ceiling")  # fmt: skip


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def image_files(data: Path) -> list[Path]:
    from visrec.data import load_dataset

    ds = load_dataset(data)
    return [ds.abspath(r) for r in ds.records]


def part_visrec(
    data: Path, runtime: str | None = None, precision: str | None = None, calibrate: bool = True
) -> dict[str, Any]:
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index

    if runtime:
        os.environ["VISREC_RUNTIME"] = runtime
    if precision:
        os.environ["VISREC_PRECISION"] = precision
    ds = load_dataset(data)
    t0 = time.perf_counter()
    enc: Any = create_encoder()
    enc.session()
    out: dict[str, Any] = {"session_s": time.perf_counter() - t0, "n": len(ds), "runtime": enc.runtime}
    out["precision"] = enc.precision
    out["calibrate"] = calibrate
    with tempfile.TemporaryDirectory() as tmp:
        for run in ("first", "steady", "steady"):
            target = Path(tmp) / run
            t0 = time.perf_counter()
            report = build_index(ds, target, enc, IndexConfig(calibrate=calibrate))
            took = time.perf_counter() - t0
            if f"{run}_s" not in out or took < out[f"{run}_s"]:
                out[f"{run}_s"] = took
                out[f"{run}_stages"] = report.seconds
                out[f"{run}_embed_img_s"] = report.embedded_per_second
            shutil.rmtree(target)
    out["img_s"] = len(ds) / out["steady_s"]
    out["first_img_s"] = len(ds) / out["first_s"]
    return out


def repeated_folder(data: Path, repeat: int, dest: Path, limit: int = 0) -> Path:
    """A class-per-folder copy of ``data`` (symbolic links; copies where links are refused) holding each image
    (its first ``limit`` when > 0) ``repeat`` times under distinct names: ``dest/<first label>/r<k>_<n>_<name>``."""
    from visrec.data import load_dataset

    ds = load_dataset(data)
    for n, rec in enumerate(ds.records[:limit] if limit > 0 else ds.records):
        src = ds.abspath(rec)
        folder = dest / (rec.labels[0] if rec.labels else "unlabeled")
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(repeat):
            link = folder / f"r{k}_{n}_{src.name}"
            try:
                link.symlink_to(src.resolve())  # a relative source would dangle from dest
            except OSError:
                shutil.copyfile(src, link)
    return dest


def naive_input(path: Path, size: int) -> np.ndarray:
    """Full-size PIL decode, centre square, bilinear resize, scaled to -1..1: ``(1, 3, size, size)`` float32."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    arr = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR, box=box), np.float32)
    return ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


def part_naive(data: Path) -> dict[str, Any]:
    import torch

    from visrec.encoders import create_encoder

    enc: Any = create_encoder()
    model = enc.build_torch()
    files = image_files(data)
    torch.set_num_threads(os.cpu_count() or 1)
    feats = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for path in files:
            x = torch.from_numpy(naive_input(path, enc.input_size))
            feats.append(model(x)[0].numpy())
    dt = time.perf_counter() - t0
    return {"n": len(files), "img_s": len(files) / dt, "torch_threads": torch.get_num_threads()}


def part_fair(data: Path) -> dict[str, Any]:
    from fair_baseline import FairBaseline, asjson, embed_folder, model_only

    from visrec.encoders import create_encoder

    enc: Any = create_encoder()
    model, cfg, files = enc.build_torch().eval(), FairBaseline(), image_files(data)
    runs = [embed_folder(model, files, enc.input_size, cfg, w, p) for p in cfg.precisions for w in cfg.workers]
    best = max(runs, key=lambda r: r["img_s"])
    return {
        "n": len(files), "img_s": best["img_s"], "workers": best["workers"], "settings": best["settings"],
        "precision": best["precision"], "config": asjson(cfg),
        "by_workers": {f"{r['precision']}/{r['workers']}": round(r["img_s"], 1) for r in runs},
        "torch_model_img_s": model_only(model, enc.input_size, cfg, precision=best["precision"]),
    }  # fmt: skip


def part_model(runtime: str, precision: str | None = None) -> dict[str, Any]:
    from visrec.encoders import create_encoder

    os.environ["VISREC_RUNTIME"] = runtime
    if precision:
        os.environ["VISREC_PRECISION"] = precision
    enc: Any = create_encoder()
    session = enc.session()
    best: dict[str, Any] = {"img_s": 0.0, "runtime": enc.runtime, "precision": enc.precision}
    for bs in (1, 4, 8, 16, 32):
        x = np.random.default_rng(0).uniform(-1, 1, (bs, 3, enc.input_size, enc.input_size)).astype(np.float32)
        session.run(None, {"image": x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.5:
            session.run(None, {"image": x})
            n += bs
        speed = n / (time.perf_counter() - t0)
        best[f"bs{bs}"] = speed
        if speed > best["img_s"]:
            best.update(img_s=speed, batch=bs)
    best["per_core"] = per_core_speeds(enc)
    return best


def per_core_speeds(enc: Any, per_thread: int = 192) -> dict[str, float]:
    """Images/s of the encoder's batch path on ready-made batches: one thread per core, each running
    single-threaded inferences of ``bs`` images (what ``build_index`` runs, minus decoding), per batch size."""
    from concurrent.futures import ThreadPoolExecutor

    from visrec.blas import usable_cores

    single, cores = enc.batch_session(), usable_cores()
    out = {}
    for bs in (4, 8, 16, 32):
        x = np.random.default_rng(0).uniform(-1, 1, (bs, 3, enc.input_size, enc.input_size)).astype(np.float32)
        single.run(None, {"image": x})

        def work(_: int, x: np.ndarray = x, bs: int = bs) -> None:
            for _ in range(per_thread // bs):
                single.run(None, {"image": x})

        t0 = time.perf_counter()
        with ThreadPoolExecutor(cores) as pool:
            list(pool.map(work, range(cores)))
        out[f"bs{bs}"] = cores * per_thread / (time.perf_counter() - t0)
    return out


def matmul_flops(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best float32 matmul FLOP/s of numpy, torch, ONNX Runtime and OpenVINO (all cores, when installed).

    The runtimes' own kernels beat numpy here (ONNX Runtime's MLAS measured 419 vs numpy 230 GFLOP/s on this
    machine kind): the ceiling is the best of all, so that the encoder's graph can never appear to beat it on
    whichever runtime runs it.
    """
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    torch.set_num_threads(os.cpu_count() or 1)
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    ta = torch.from_numpy(a)
    spec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("a", "b", "c")]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm", spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    fns = {
        "numpy": lambda: a @ a,
        "torch": lambda: torch.mm(ta, ta),
        "onnxruntime": lambda: sess.run(None, {"a": a, "b": a}),
    }
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        pass
    else:
        pa, pb = (ops.parameter([size, size], np.float32, name=n) for n in ("a", "b"))
        mm = ov.Model([ops.matmul(pa, pb, False, False)], [pa, pb], "mm")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        request = ov.Core().compile_model(mm, "CPU", config).create_infer_request()
        fns["openvino"] = lambda: request.infer({"a": a, "b": a})
    out = {}
    for name, fn in fns.items():
        fn()
        best = min(_timed(fn) for _ in range(repeats))
        out[name] = 2 * size**3 / best
    return out


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def part_ceiling(data: Path) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from visrec.encoders import create_encoder

    enc: Any = create_encoder()
    model = enc.build_torch()
    x = torch.zeros(1, 3, enc.input_size, enc.input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = matmul_flops()
    return {"flops_per_image": float(counter.get_total_flops()), "matmul": flops, "peak": max(flops.values())}


def part_env(part: str) -> dict[str, str]:
    """The environment a part's process starts with: the fair baseline's tuned allocator, else as inherited."""
    if part == "fair":
        from fair_baseline import FairBaseline, fair_env

        return fair_env(FairBaseline())
    return dict(os.environ)


def run_part(part: str, data: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--part", part, "--data", str(data)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=part_env(part))
    if done.returncode != 0:
        sys.exit(f"part {part} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def best_rounds(data: Path, rounds: int, repeated: Path) -> dict[str, dict[str, Any]]:
    """Interleave the timed parts ``rounds`` times; keep each part's fastest round (and every round's speed).

    The ``visrec`` parts index ``repeated``; the others read ``data``."""
    from visrec.encoders.runtime import cpu_has_bf16, precision_name, runtime_name

    parts = ["visrec", "fair", "naive", "model-onnxruntime"]
    if runtime_name() != "onnxruntime":
        parts.insert(1, "visrec-onnxruntime")  # the reference runtime, end to end
    if runtime_name() == "openvino" and cpu_has_bf16() and precision_name("openvino") != "bf16":
        parts.insert(1, "visrec-bf16")  # the opt-in precision (VISREC_PRECISION=bf16), end to end
    parts[1:1] = ["visrec-vectors"] + (["visrec-vectors-bf16"] if "visrec-bf16" in parts else [])
    if importlib.util.find_spec("openvino") is not None:
        parts.append("model-openvino")
        if cpu_has_bf16() and precision_name("openvino") != "bf16":
            parts.append("model-openvino-bf16")  # the fastest precision that passes the accuracy gate
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for part in parts:
            res = run_part(part, repeated if part.startswith("visrec") else data)
            speeds = [*best.get(part, {}).get("rounds", []), round(res["img_s"], 1)]
            if part not in best or res["img_s"] > best[part]["img_s"]:
                best[part] = res
            best[part]["rounds"] = speeds
    best["ceiling"] = run_part("ceiling", data)
    return best


def report(res: dict[str, dict[str, Any]], data: Path) -> None:
    vis, naive, fair, ceil = res["visrec"], res["naive"], res["fair"], res["ceiling"]
    flops, peak = ceil["flops_per_image"], ceil["peak"]
    print(f"data: {data} ({naive['n']} images; build_index indexes them {vis['n'] // naive['n']} times over: "
          f"{vis['n']} files), cores: {os.cpu_count()}")  # fmt: skip
    print(f"encoder FLOPs/image: {flops / 1e9:.3f} G; matmul peak: {peak / 1e9:.1f} GFLOP/s "
          f"({', '.join(f'{k} {v / 1e9:.1f}' for k, v in ceil['matmul'].items())})")  # fmt: skip
    rows = [
        ("naive: torch eager, 1 image, full PIL decode", naive["img_s"], naive),
        (
            f"fair: torch {fair['precision']} batch {fair['settings']['batch']}, {fair['workers']} decode worker(s)",
            fair["img_s"],
            fair,
        ),
        (
            f"fair: torch {fair['precision']} model only (batch {fair['settings']['batch']})",
            fair["torch_model_img_s"],
            fair,
        ),
        (f"visrec build_index ({vis['runtime']} {vis['precision']}), first call", vis["first_img_s"], vis),
        (f"visrec build_index ({vis['runtime']} {vis['precision']}), steady", vis["img_s"], vis),
    ]
    for part in ("visrec-bf16", "visrec-onnxruntime", *VECTOR_PARTS):
        if part in res:
            ref = res[part]
            what = "steady" if ref.get("calibrate", True) else "steady, no calibration"
            rows.append((f"visrec build_index ({ref['runtime']} {ref['precision']}), {what}", ref["img_s"], ref))
    names = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
    for runtime, part in [*zip(RUNTIMES, MODEL_PARTS, strict=True), ("openvino", "model-openvino-bf16")]:
        if part in res:
            model = res[part]
            rows.append(
                (f"{names[runtime]} {model['precision']} model only (batch {model['batch']})", model["img_s"], model)
            )
    print(f"{'path':<48} {'img/s':>8} {'x naive':>8} {'x fair':>7} {'% ceiling':>10} {'peak RSS MiB':>13}")
    for name, speed, stats in rows:
        frac, rss = 100 * flops * speed / peak, stats["peak_rss_mb"]
        ratios = f"{speed / naive['img_s']:>8.2f} {speed / fair['img_s']:>7.2f}"
        print(f"{name:<48} {speed:>8.1f} {ratios} {frac:>9.1f}% {rss:>13.0f}")
    print(f"fair baseline settings, read back in its process: {fair['settings']}; img/s by precision/decode workers "
          f"{fair['by_workers']}")  # fmt: skip
    print(f"visrec stages (steady, s): {vis['steady_stages']}; embed stage {vis['steady_embed_img_s']} img/s")
    print(f"visrec stages (first, s): {vis['first_stages']}; session creation {vis['session_s']:.2f} s (untimed)")
    if "visrec-bf16" in res:
        bf = res["visrec-bf16"]
        print(f"visrec bf16 stages (steady, s): {bf['steady_stages']}; embed stage {bf['steady_embed_img_s']} img/s; "
              f"RATIO visrec bf16/fair = {bf['img_s'] / fair['img_s']:.2f}x")  # fmt: skip
    print(
        "rounds (img/s): "
        + "; ".join(
            f"{p} {res[p]['rounds']}"
            for p in (
                "visrec",
                "visrec-bf16",
                *VECTOR_PARTS,
                "visrec-onnxruntime",
                "fair",
                "naive",
                *MODEL_PARTS,
                "model-openvino-bf16",
            )
            if p in res
        )
    )
    for part in (*MODEL_PARTS, "model-openvino-bf16"):
        if part in res:
            print(
                f"{part} by batch size (img/s): "
                + ", ".join(f"{k} {v:.0f}" for k, v in res[part].items() if k.startswith("bs"))
            )
            print(
                f"{part} one single-thread inference per core, ready batches (img/s): "
                + ", ".join(f"{k} {v:.0f}" for k, v in res[part]["per_core"].items())
            )
    lead(res)
    matched(res)
    bound(res)
    print(f"RATIO visrec/fair = {vis['img_s'] / fair['img_s']:.2f}x (goal >= 3); visrec/naive = "
          f"{vis['img_s'] / naive['img_s']:.2f}x; fraction of compute ceiling = "
          f"{100 * flops * vis['img_s'] / peak:.1f}%")  # fmt: skip


def lead(res: dict[str, dict[str, Any]]) -> None:
    """Where visrec's lead over the fair baseline comes from: the runtime (model alone, each at its best) and the
    pipeline around it (how close each end-to-end loop gets to its own model-alone speed)."""
    vis, fair = res["visrec"], res["fair"]
    runtime = "model-openvino" if vis["runtime"] == "openvino" and "model-openvino" in res else "model-onnxruntime"
    model = max(res[runtime]["img_s"], *res[runtime]["per_core"].values())
    print(f"lead: runtime {vis['runtime']} model alone {model:.0f} img/s vs torch {fair['torch_model_img_s']:.0f} "
          f"({model / fair['torch_model_img_s']:.2f}x); pipeline: visrec reaches {vis['img_s'] / model:.0%} of its "
          f"model-alone speed, the fair loop {fair['img_s'] / fair['torch_model_img_s']:.0%} of its own")  # fmt: skip


def matched(res: dict[str, dict[str, Any]]) -> None:
    """visrec against the fair loop at the same precision (float32 against float32, bfloat16 against bfloat16),
    with the calibration (the default build) and without it (``IndexConfig(calibrate=False)``: the vectors, hashes
    and metadata saved as a searchable index, the work the fair loop's in-memory vectors compare with)."""
    by_precision: dict[str, float] = {}
    for key, speed in res["fair"]["by_workers"].items():  # "f32/0": img/s
        prec = key.split("/")[0]
        by_precision[prec] = max(by_precision.get(prec, 0.0), float(speed))
    for part in ("visrec", "visrec-bf16", *VECTOR_PARTS):
        ref = res.get(part)
        fair = by_precision.get(ref["precision"]) if ref else None
        if ref is None or not fair:
            continue
        what = "calibrated index" if ref.get("calibrate", True) else "no calibration"
        print(f"RATIO same precision ({ref['precision']}, {what}): visrec {ref['img_s']:.1f} / fair {fair:.1f} img/s "
              f"= {ref['img_s'] / fair:.2f}x")  # fmt: skip


def bound(res: dict[str, dict[str, Any]]) -> None:
    """The most any end-to-end indexer with this model could reach against the fair loop: the fastest model-alone
    speed (any runtime, any precision that ships; all cores, ready batches, nothing decoded, hashed or stored)
    over the fair loop's end-to-end speed. Decoding, hashing and the calibration share the same cores, so a real
    pipeline stays below it."""
    fair = res["fair"]["img_s"]
    speeds = {
        p: max(res[p]["img_s"], *res[p]["per_core"].values()) for p in (*MODEL_PARTS, "model-openvino-bf16") if p in res
    }
    if speeds:
        part, best = max(speeds.items(), key=lambda kv: kv[1])
        print(f"BOUND model alone ({part}, {res[part]['precision']}) {best:.0f} img/s = {best / fair:.2f}x the fair "
              f"loop: no pipeline around this model can pass this ratio here")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "naruto_roboflow")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5, help="index each image this many times (steady state)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images of --data (a loaded machine)")
    ap.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = ap.parse_args()
    if args.part:
        if args.part == "model-openvino-bf16":
            res = part_model("openvino", "bf16")
        elif args.part in MODEL_PARTS:
            res = part_model(args.part.removeprefix("model-"))
        else:
            parts = {"visrec": part_visrec, "naive": part_naive, "fair": part_fair, "ceiling": part_ceiling}
            fn = parts.get(args.part)
            if fn is None and args.part in ("visrec-bf16", *VECTOR_PARTS):
                bf16 = args.part.endswith("bf16")
                res = part_visrec(args.data, precision="bf16" if bf16 else None, calibrate="vectors" not in args.part)
            else:
                res = fn(args.data) if fn else part_visrec(args.data, args.part.removeprefix("visrec-"))
        res["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(res))
        return
    if not args.data.exists():
        sys.exit(f"{args.data} not found; pass --data DIR (a labeled image folder)")
    with tempfile.TemporaryDirectory(prefix="visrec-bench-") as tmp:
        data = repeated_folder(args.data, 1, Path(tmp) / "subset", args.limit) if args.limit else args.data
        repeated = repeated_folder(data, max(1, args.repeat), Path(tmp) / "data")
        res = best_rounds(data, args.rounds, repeated)
    report(res, args.data)
    if args.json:
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
