"""A self-contained HTML report of an evaluation: leakage warning, comparison table, plots, worst failures.

Plots and thumbnails are embedded as base64 ``data:`` URIs, so the single file can be mailed or archived.
Every text from the data (paths, labels) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visrec.eval.plots import figure_png

THUMB = 112
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.warn{background:#fde2e1;border:2px solid #c0392b;padding:10px;
margin:12px 0;font-weight:600}.plots img{max-width:560px;margin:6px;border:1px solid #ddd}
.fail{display:flex;gap:8px;align-items:flex-start;margin:8px 0;padding:6px;border-bottom:1px solid #eee}
.fail figure{margin:0;text-align:center;font-size:12px;width:120px}.fail img{width:112px;height:112px;
object-fit:contain;background:#eee}
"""
TABLE_COLUMNS = (
    ("encoder", "encoder", "{}"), ("mode", "mode", "{}"), ("top1", "top-1", "{:.1%}"),
    ("top1_raw", "raw top-1", "{:.1%}"), ("macro_f1", "macro-F1", "{:.1%}"), ("unknown_rate", "unknown", "{:.1%}"),
    ("score_1000", "search", "{:.0f}"), ("map_at_r", "mAP@R", "{:.3f}"), ("images_per_s", "img/s", "{:.1f}"),
    ("p50_ms", "p50 ms", "{:.1f}"), ("p95_ms", "p95 ms", "{:.1f}"), ("peak_rss_mb", "RSS MiB", "{:.0f}"),
    ("index_mb", "idx MiB", "{:.2f}"),
)  # fmt: skip
TERMINAL_KEYS = ("encoder", "mode", "top1", "top1_raw", "macro_f1", "unknown_rate", "score_1000", "map_at_r",
                 "images_per_s", "p95_ms")  # fmt: skip
"""The columns a terminal shows by default (``--wide`` and the HTML report show all of ``TABLE_COLUMNS``)."""
LEGEND = (
    "top-1: right answers, unknown counted wrong; raw top-1: before the unknown decision; unknown: share answered "
    "unknown; search: image-search score out of 1000 (600 x top-1 + 300 x top-5 + 100 x top-10 of the nearest "
    "images' labels); mAP@R: mean average precision over the R images of the query's label; img/s: indexing speed; "
    "p50/p95 ms: one-image query latency; RSS / idx MiB: peak memory and index size."
)


def data_uri(data: bytes, mime: str) -> str:
    """``data:`` URI of raw bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uri(path: str | Path, size: int = THUMB) -> str | None:
    """JPEG data URI of an image shrunk to fit ``size`` pixels, or None when the file cannot be read."""
    from PIL import Image

    from visrec.data import load_image
    from visrec.errors import BadImage

    try:
        arr = load_image(path, draft_size=size)
    except (BadImage, OSError):
        return None
    im = Image.fromarray(arr)
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return data_uri(buf.getvalue(), "image/jpeg")


def format_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None) -> list[list[str]]:
    """Header plus one formatted row per table entry (shared by the HTML report and the terminal); ``keys``
    picks columns of ``TABLE_COLUMNS`` (default: all)."""
    cols = [c for c in TABLE_COLUMNS if keys is None or c[0] in keys]
    out = [[title for _, title, _ in cols]]
    for r in rows:
        out.append([fmt.format(r[key]) if r.get(key) is not None else "-" for key, _, fmt in cols])
    return out


def _table_html(cells: Sequence[Sequence[str]], left: int = 2) -> str:
    def row(tag: str, vals: Sequence[str]) -> str:
        return (
            "<tr>"
            + "".join(f"<{tag}{' class=l' if j < left else ''}>{html.escape(v)}</{tag}>" for j, v in enumerate(vals))
            + "</tr>"
        )

    return "<table>" + row("th", cells[0]) + "".join(row("td", r) for r in cells[1:]) + "</table>"


def _figure(uri: str | None, caption: str) -> str:
    img = f'<img src="{uri}" alt="{html.escape(caption)}">' if uri else "<div>(unreadable)</div>"
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _failures_html(enc: Mapping[str, Any], root: Path | None) -> str:
    parts = []
    for mode, d in enc["modes"].items():
        for f in d.get("failures", []):
            figs = [_figure(thumbnail_uri(f["query"]), f"query: {'/'.join(f['truth'])} -> {f['answer']} "
                                                       f"({f['confidence']:.2f})")]  # fmt: skip
            for h in f["hits"]:
                p = Path(h["path"]) if root is None else root / h["path"]
                figs.append(_figure(thumbnail_uri(p), f"{'/'.join(h['labels']) or '-'} {h['score']:.2f}"))
            parts.append(f"<div class=fail><b>{html.escape(mode)}</b>{''.join(figs)}</div>")
    return "".join(parts) or "<p>No confident wrong answer.</p>"


def _open_set_html(enc: Mapping[str, Any]) -> str:
    rows = [["mode", "known recall", "rejected unknown", "AUROC", "known", "unknown"]]
    for m, d in enc["modes"].items():
        o = d.get("open_set")
        if o:
            rows.append([m, f"{o['known_recall']:.1%}", f"{o['rejection_rate']:.1%}", f"{o['auroc']:.3f}",
                         str(o["n_known"]), str(o["n_unknown"])])  # fmt: skip
    return _table_html(rows, 1) if len(rows) > 1 else ""


BEST_NOTE = (
    "<p>best threshold answers: the share of known test images the best single threshold on the same "
    "confidence answers at the target precision on this test stream, chosen with the test labels: the "
    "ceiling of the confidence ranking, which no calibration can pass.</p>"
)


def _trade_off_html(enc: Mapping[str, Any]) -> str:
    rows = [["mode", "target", "precision", "known answered", "unknown rejected", "held-out precision",
             "best threshold answers", ""]]  # fmt: skip
    for m, d in enc["modes"].items():
        t = d.get("trade_off")
        for p in (t or {}).get("points", []):
            mark = "<- default" if p["target"] == t["default"] else ""
            rows.append([m, f"{p['target']:.1%}", f"{p['precision']:.1%}", f"{p['known_answered']:.1%}",
                         f"{p['unknown_rejected']:.1%}", f"{p['held_out_precision']:.1%}",
                         f"{p.get('best_known_answered', float('nan')):.1%}", mark])  # fmt: skip
    return _table_html(rows, 1) if len(rows) > 1 else ""


def render_html(result: Mapping[str, Any], figures: Mapping[str, Any], gallery_root: Path | None = None) -> str:
    """The report page for an evaluation ``result`` and its ``figures`` (name -> matplotlib Figure)."""
    sp = result["split"]
    body = [f"<h1>visrec evaluation: {html.escape(str(result['dataset']))}</h1>"]
    body += [f"<div class=warn>{html.escape(w)}</div>" for w in result.get("warnings", [])]
    left = f"; {sp['no_split']} with no split value, left out" if sp.get("no_split") else ""
    body.append(f"<p>split: {html.escape(sp['rule'])} ({sp['train']} train, {sp['test']} test{left}; "
                f"{sp['n_leaked']} test images with a near-duplicate in train)</p>")  # fmt: skip
    body += ["<h2>Comparison</h2>", _table_html(format_table(result["table"])), f"<p>{html.escape(LEGEND)}</p>"]
    for enc in result["encoders"]:
        r = enc["retrieval"]
        body.append(f"<h2>{html.escape(str(enc['encoder']))}: retrieval</h2>")
        body.append(_table_html([["top-1", "top-5", "top-10", "search /1000", "P@5", "P@10", "mAP@R"],
                                 [f"{r['top1']:.1%}", f"{r['top5']:.1%}", f"{r['top10']:.1%}",
                                  f"{r['score_1000']:.0f}", f"{r['precision@5']:.3f}", f"{r['precision@10']:.3f}",
                                  f"{r['map_at_r']:.3f}"]], 0))  # fmt: skip
        opens = _open_set_html(enc)
        if opens:
            body += ["<h3>open set</h3>", opens]
        trade = _trade_off_html(enc)
        if trade:
            body += ["<h3>precision / coverage trade-off (changeable at classify time)</h3>", trade, BEST_NOTE]
    body.append("<h2>Plots</h2><div class=plots>")
    body += [f'<img src="{data_uri(figure_png(f), "image/png")}" alt="{html.escape(n)}">' for n, f in figures.items()]
    body.append("</div><h2>Worst failures (most confident wrong answers)</h2>")
    for enc in result["encoders"]:
        root = Path(enc["gallery_root"]) if enc.get("gallery_root") else gallery_root
        body += [f"<h3>{html.escape(str(enc['encoder']))}</h3>", _failures_html(enc, root)]
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>visrec evaluation</title><style>{_CSS}</style>"
        f"</head><body>{''.join(body)}</body></html>"
    )
