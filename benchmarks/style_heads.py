"""Style views for the head methods: cross-domain proxy (all styles and leave-one-style-out), in-domain, naruto.

Usage::

    python benchmarks/style_heads.py --cache /tmp/visrec-style [--method supcon] [--grid 0,1,2,3,5] [--views N]

Data sets are indexed once with the default encoder into ``<cache>/<set>.vrx`` (the same path as ``visrec
finetune``): caltech101_dev (its ``split`` column: 15 train photos per class, val cut from them, 1399 test) and
naruto_roboflow (``grouped_split``). Every train / val image is rendered once per style with the library's
:func:`visrec.train.style_views.render_view` and encoded with the index's encoder (cached as ``.npy``); a run's
:class:`~visrec.train.style_views.StyleViews` are picked from that cache by the library's ``style_plan``, so they
are exactly the views ``visrec finetune --style-views N --styles ...`` encodes (``N`` <= the number of styles).

Cross-domain proxy (as ``benchmarks/encoder_choice.py``): caltech101_dev *test* photos rendered at full size
with :func:`visrec.train.styles.sketch` / :func:`~visrec.train.styles.cartoon`, queried against the projected
photo train gallery; 1000-point score (600 top-1 + 300 top-5 + 100 top-10). Because the proxy's queries come from
the same renderers the views use, the honest figure for a style never seen is **leave-one-style-out**: views
without ``sketch`` scored on the sketch proxy, views without ``cartoon`` on the cartoon proxy.

Choosing ``N`` uses caltech's TRAIN photos only: every third train photo of a class becomes a pseudo-query (its
cached sketch / cartoon view, never trained on), the rest train the head; leave-one-style-out as above; the grid
point with the best mean pseudo cross-domain score wins (``--views`` skips the choice). Test figures are then
measured once: frozen encoder, the head without views, with all styles, and both leave-one-style-out runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from embed_cache import rendered_paths  # noqa: E402
from encoder_choice import knn_top1, retrieval  # noqa: E402

from visrec.encoders import encoder_from_info  # noqa: E402
from visrec.train import FinetuneConfig, LoopConfig  # noqa: E402
from visrec.train.data import EmbeddingSplit, item_files, load_split  # noqa: E402
from visrec.train.loop import project  # noqa: E402
from visrec.train.run import finetune_split, prepare_index  # noqa: E402
from visrec.train.style_views import HEAD_STYLES, StyleViews, render_view, style_plan, working_copy  # noqa: E402

SETS = {"caltech": ("caltech101_dev", "split"), "naruto": ("naruto_roboflow", "auto")}
PROXIES = ("sketch", "cartoon")


def prepared(cache: Path, root: Path, name: str, seed: int) -> tuple[Path, EmbeddingSplit]:
    """The set's index (built once) and its split, as ``visrec finetune`` cuts it."""
    folder, field = SETS[name]
    index = prepare_index(root / folder, cache / f"{name}.vrx")
    train = ("train",) if field == "split" else ("train", "valid")
    return index, load_split(index, field, train, ("test",), 0.2, seed)


def style_vectors(cache: Path, index: Path, data: EmbeddingSplit, style: str, seed: int) -> np.ndarray:
    """``(len(rows), d)`` vectors of the train / val images (``data.rows("train", "val")``) rendered in ``style``
    (round 0 of :func:`render_view`); cached in ``<cache>/<index>.<style>.s<seed>.npy``."""
    path = cache / f"{index.stem}.{style}.s{seed}.npy"
    if path.exists():
        return np.load(path)
    encoder = encoder_from_info(data.encoder["describe"])
    rows = data.rows("train", "val")
    files = item_files(index, [data.ids[r] for r in rows])
    t0 = time.perf_counter()
    out = []
    for s in range(0, len(rows), 64):
        shown = [render_view(working_copy(f, encoder.input_size), data.ids[r], style, 0, seed)
                 for r, f in zip(rows[s : s + 64], files[s : s + 64], strict=True)]  # fmt: skip
        out.append(encoder.encode_images(shown).vectors)
    vecs = np.concatenate(out).astype(np.float32)
    np.save(path, vecs)
    print(f"  {index.stem} {style}: {len(rows)} views in {time.perf_counter() - t0:.0f} s", flush=True)
    return vecs


def assemble(data: EmbeddingSplit, cached: dict[str, np.ndarray], rows: np.ndarray, styles: tuple[str, ...],
             views: int, seed: int) -> StyleViews | None:  # fmt: skip
    """The library's plan of ``views`` styles per row of ``rows`` (positions into ``data``), taken from ``cached``
    (style -> vectors of ``data.rows("train", "val")``)."""
    if not views:
        return None
    pos = {int(r): j for j, r in enumerate(data.rows("train", "val"))}
    plan = style_plan([data.ids[r] for r in rows], styles, views, seed)
    picks = [(int(r), s) for r, todo in zip(rows, plan, strict=True) for s, _ in todo]
    vecs = np.stack([cached[s][pos[r]] for r, s in picks])
    return StyleViews(vecs, np.array([r for r, _ in picks], np.int64), np.array([s for _, s in picks]))


def proxy_queries(cache: Path, root: Path, data: EmbeddingSplit) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per proxy style: ``(vectors, labels)`` of the rendered caltech test photos (label = the class folder)."""
    encoder = encoder_from_info(data.encoder["describe"])
    out = {}
    for style in PROXIES:
        path = cache / f"proxy.{style}.npy"
        files = rendered_paths(root, cache, style)
        if not path.exists():
            np.save(path, encoder.encode_images(files).vectors)
        pos = {c: k for k, c in enumerate(data.classes)}
        out[style] = (np.load(path), np.array([pos[Path(f).parent.name] for f in files]))
    return out


def figures(z: np.ndarray, data: EmbeddingSplit, queries: dict[str, tuple[np.ndarray, np.ndarray]],
            gallery_rows: np.ndarray, test_rows: np.ndarray, head: Any) -> dict[str, float]:  # fmt: skip
    """Cross-domain 1000-point scores and the photo (in-domain) kNN top-1 / 1000-point score."""
    g, gy = z[gallery_rows], data.labels[gallery_rows]
    q, qy = z[test_rows], data.labels[test_rows]
    out = {"photo_top1": knn_top1(q @ g.T, gy, qy), "photo_1000": retrieval(q @ g.T, gy, qy)["score_1000"]}
    for style, (vecs, labels) in queries.items():
        qz = vecs if head is None else project(head, vecs)
        out[style] = retrieval(qz @ g.T, gy, labels)["score_1000"]
    return out


def train(data: EmbeddingSplit, method: str, views: StyleViews | None, seed: int) -> tuple[Any, Any]:
    cfg = FinetuneConfig(method=method, loop=LoopConfig(seed=seed))
    res = finetune_split(data, cfg, views=views)
    return res.adapter.heads["image"], res


def pseudo_split(data: EmbeddingSplit) -> tuple[EmbeddingSplit, np.ndarray]:
    """Caltech's train photos only: every third train / val photo of a class becomes a pseudo-query ("test")."""
    keep = data.rows("train", "val")
    side = data.side[keep].copy()
    for c in range(len(data.classes)):
        side[np.flatnonzero(data.labels[keep] == c)[2::3]] = "test"
    sub = EmbeddingSplit(data.vectors[keep], data.labels[keep], side, tuple(data.ids[k] for k in keep),
                         data.classes, data.encoder, "pseudo-queries from the train photos")  # fmt: skip
    return sub, keep


def choose(data: EmbeddingSplit, cached: dict[str, np.ndarray], grid: list[int], method: str, seed: int) -> int:
    """Style views per image with the best mean leave-one-style-out pseudo cross-domain score (train only)."""
    sub, keep = pseudo_split(data)
    pos = {int(r): j for j, r in enumerate(data.rows("train", "val"))}
    sub_cached = {s: v[[pos[int(k)] for k in keep]] for s, v in cached.items()}
    # pseudo-queries: the held-out train photos' own sketch / cartoon renderings (never trained on)
    qrows = sub.rows("test")
    fit_rows = sub.rows("train", "val")
    print(f"\nchoosing views on caltech train photos ({len(fit_rows)} train/val, {len(qrows)} pseudo-queries)")
    print(f"{'views':>5} {'sketch (LOO)':>12} {'cartoon (LOO)':>13} {'mean':>6} {'photo top-1':>11} {'s':>5}")
    best, best_score = 0, -1.0
    for n in grid:
        scores, photo, t0 = [], [], time.perf_counter()
        for held in PROXIES:
            styles = tuple(s for s in HEAD_STYLES if s != held)
            if n > len(styles):
                continue
            if n or held == PROXIES[0]:  # without views both held-out styles share one head
                head, _ = train(sub, method, _sub_views(sub, sub_cached, fit_rows, styles, n, seed), seed)
            z = project(head, sub.vectors)
            q = {held: (sub_cached[held][qrows], sub.labels[qrows])}
            f = figures(z, sub, q, fit_rows, qrows, head)
            scores.append(f[held])
            photo.append(f["photo_top1"])
        mean = float(np.mean(scores))
        print(f"{n:5d} {scores[0]:12.0f} {scores[1]:13.0f} {mean:6.0f} {np.mean(photo):11.1f} "
              f"{time.perf_counter() - t0:5.0f}", flush=True)  # fmt: skip
        if mean > best_score:
            best, best_score = n, mean
    return best


def _sub_views(sub: EmbeddingSplit, cached: dict[str, np.ndarray], fit_rows: np.ndarray, styles: tuple[str, ...],
               n: int, seed: int) -> StyleViews | None:  # fmt: skip
    """``assemble`` for the pseudo split, whose cached rows are ordered like ``sub`` itself."""
    if not n:
        return None
    plan = style_plan([sub.ids[r] for r in fit_rows], styles, n, seed)
    picks = [(int(r), s) for r, todo in zip(fit_rows, plan, strict=True) for s, _ in todo]
    vecs = np.stack([cached[s][r] for r, s in picks])
    return StyleViews(vecs, np.array([r for r, _ in picks], np.int64), np.array([s for _, s in picks]))


RUNS = (("frozen encoder", None, None), ("head, no views", HEAD_STYLES, 0), ("views, all styles", HEAD_STYLES, -1),
        ("views, no sketch", tuple(s for s in HEAD_STYLES if s != "sketch"), -1),
        ("views, no cartoon", tuple(s for s in HEAD_STYLES if s != "cartoon"), -1))  # fmt: skip


def test_table(name: str, data: EmbeddingSplit, cached: dict[str, np.ndarray], queries: dict[str, Any],
               n: int, method: str, seed: int) -> None:  # fmt: skip
    """Every run of ``RUNS`` on the test split, side by side."""
    fit_rows, test = data.rows("train", "val"), data.rows("test")
    print(f"\n{name}: {method}, {n} style views per image; test {len(test)} vs train+val {len(fit_rows)}")
    cols = "sketch cartoon" if queries else "top-1  mAP@R"
    print(f"{'run':20s} {cols} | photo top-1 photo-1000 | train s epochs load")
    for label, styles, views in RUNS:
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        if styles is None:
            head, z, res = None, data.vectors, None
        else:
            v = assemble(data, cached, fit_rows, styles, n if views < 0 else views, seed)
            head, res = train(data, method, v, seed)
            z = project(head, data.vectors)
        f = figures(z, data, queries, fit_rows, test, head)
        secs = time.perf_counter() - t0
        load = (load0 + os.getloadavg()[0]) / 2
        ep = res.training.epochs if res else 0
        if queries:
            first = f"{f['sketch']:6.0f} {f['cartoon']:7.0f}"
        else:
            after = res.after if res else res_before(data)
            first = f"{100 * after['top1']:5.1f} {100 * after['map_at_r']:6.1f}"
        print(f"{label:20s} {first} | {f['photo_top1']:11.1f} {f['photo_1000']:10.0f} | {secs:7.1f} {ep:6d} "
              f"{load:4.1f}", flush=True)  # fmt: skip


def res_before(data: EmbeddingSplit) -> dict[str, float]:
    from visrec.train.evaluate import embedding_figures

    return embedding_figures(data.vectors, data.labels, data.rows("test"), data.rows("train", "val"), data.classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    ap.add_argument("--method", default="supcon")
    ap.add_argument("--grid", default="0,1,2,3,5")
    ap.add_argument("--views", type=int, default=None, help="skip the choice on train and use this many")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    index, cal = prepared(args.cache, args.data, "caltech", args.seed)
    cached = {s: style_vectors(args.cache, index, cal, s, args.seed) for s in HEAD_STYLES}
    queries = proxy_queries(args.cache, args.data, cal)
    print(f"caltech ready in {time.perf_counter() - t0:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    grid = [int(g) for g in args.grid.split(",")]
    n = args.views if args.views is not None else choose(cal, cached, grid, args.method, args.seed)
    test_table("caltech101_dev", cal, cached, queries, n, args.method, args.seed)
    index, nar = prepared(args.cache, args.data, "naruto", args.seed)
    cached = {s: style_vectors(args.cache, index, nar, s, args.seed) for s in HEAD_STYLES}
    test_table("naruto_roboflow (grouped_split)", nar, cached, {}, n, args.method, args.seed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
