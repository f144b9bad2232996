"""Peak memory of `visrec serve` under 8 concurrent worst-case uploads, with and without the image-slot limit.

A worst-case upload is a PNG just under the pixel budget (40 MP by default) that compresses to a few hundred KB, so
the upload limit does not bound it: decoding it takes ~120 MB of RGB. Each server is a real ``visrec serve``
subprocess (UI on, as by default) over a small fake-encoder index; 8 client threads post the image at once to one
route, and the server's peak resident memory (``VmHWM`` from /proc, Linux only) is read before and after.

Servers compared side by side in one run: ``--max-concurrent 2`` (the default) and ``--max-concurrent 8`` (no
effective limit for 8 requests). Routes: ``/api/search/image`` (the image is reduced to the encoder's need right
after decoding) and ``/api/scene`` (keeps the full-size pixels: boxes are in the file's pixels).

    python benchmarks/serve_memory.py [--megapixels 40] [--clients 8]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worst_png(megapixels: float) -> bytes:
    """A 4:3 PNG of ``megapixels`` (just under) with a soft gradient: small to send, large to decode."""
    w = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    h = int(megapixels * 1e6 // w)
    row = (np.arange(w) * 255 // max(w - 1, 1)).astype(np.uint8)
    im = Image.fromarray(np.broadcast_to(row, (h, w))).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def build_index(folder: Path) -> Path:
    from tests.fixtures_images import make_labeled_tree
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index.writer import build_index as build

    make_labeled_tree(folder / "data", ("amber", "blue", "crimson"), per_class=6, size=64)
    out = folder / "idx.vrx"
    build(load_dataset(folder / "data"), out, create_encoder("fake"))
    return out


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def start(index: Path, slots: int) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "visrec.cli", "serve", str(index), "--port", str(port), "--max-concurrent", str(slots)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            if httpx.get(url + "/api/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.5)


def burst(url: str, route: str, data: bytes, clients: int) -> tuple[list[int], float]:
    """``clients`` threads post ``data`` at once; their status codes and the wall time."""
    import httpx

    codes: list[int] = []
    gate = threading.Barrier(clients)

    def one() -> None:
        gate.wait()
        r = httpx.post(url + route, files={"file": ("worst.png", data, "image/png")}, timeout=600)
        codes.append(r.status_code)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--megapixels", type=float, default=39.9)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    data = worst_png(args.megapixels)
    print(f"worst-case upload: {args.megapixels} MP PNG, {len(data) / 1e3:.0f} KB; {args.clients} clients at once")
    print("machine shared with other work: the wall times are noisy, the memory figures are not")
    with tempfile.TemporaryDirectory() as tmp:
        index = build_index(Path(tmp))
        peaks: dict[tuple[str, int], float] = {}
        for route in ("/api/search/image", "/api/scene"):
            for slots in (2, args.clients):
                proc, url = start(index, slots)
                try:
                    burst(url, route, small_png(), 1)  # warm up the route (encoder, segmenter) first
                    before = status_kib(proc.pid, "VmHWM")
                    codes, secs = burst(url, route, data, args.clients)
                    after = status_kib(proc.pid, "VmHWM")
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
                peaks[(route, slots)] = after / 2**20
                print(f"{route:18s} --max-concurrent {slots}: peak RSS {before / 2**20:.2f} -> {after / 2**20:.2f} GiB "
                      f"(+{(after - before) / 2**20:.2f}); statuses {sorted(set(codes))}; {secs:.1f} s")  # fmt: skip
        for route in ("/api/search/image", "/api/scene"):
            grown = peaks[(route, args.clients)] / peaks[(route, 2)]
            print(f"{route}: peak with {args.clients} slots / with 2 slots = {grown:.2f}x")


def small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


if __name__ == "__main__":
    main()
