"""Plots of an evaluation, each returned as a matplotlib ``Figure`` (Agg canvas, no pyplot, no global state).

The caller saves them (``fig.savefig``) or embeds them (:func:`figure_png`). Inputs are the dicts that
:mod:`visrec.eval.metrics` computes, so a plot can be redrawn from a saved JSON report.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visrec.data.readers import printable
from visrec.errors import MissingExtra


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency of the eval reports
        raise MissingExtra("matplotlib", "eval", "evaluation plots") from e
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a Figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def confusion_figure(classification: Mapping[str, Any], title: str = "") -> Any:
    """Confusion matrix (rows: true class, columns: answer, last column: unknown), counts in the cells."""
    cm = np.asarray(classification["confusion"], np.int64)
    classes = list(classification["classes"])
    side = max(4.0, 0.5 * len(classes) + 2)
    fig = _figure(side + 1, side)
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(cm.shape[1]), [*[printable(c) for c in classes], "unknown"], rotation=45, ha="right")
    ax.set_yticks(range(cm.shape[0]), [printable(c) for c in classes])
    ax.set_xlabel("answer")
    ax.set_ylabel("true class")
    if cm.size <= 400:
        top = cm.max() if cm.size else 0
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, str(v), ha="center", va="center", color="white" if v > top / 2 else "black", fontsize=8)
    ax.set_title(title or "confusion matrix")
    return fig


def per_class_figure(classification: Mapping[str, Any], title: str = "") -> Any:
    """Grouped bars of precision, recall and F1 per class."""
    per = classification["per_class"]
    classes = list(per)
    fig = _figure(max(6.0, 0.6 * len(classes) + 2), 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(classes))
    for j, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (j - 1) * 0.27, [per[c][key] for c in classes], width=0.27, label=key)
    ax.set_xticks(x, [printable(c) for c in classes], rotation=45 if len(classes) > 6 else 0,
                  ha="right" if len(classes) > 6 else "center")  # fmt: skip
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    ax.set_title(title or "per-class precision / recall / F1")
    return fig


def coverage_figure(curves: Mapping[str, Mapping[str, Any]], title: str = "") -> Any:
    """Accuracy against coverage (selective classification), one line per named curve."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, c in curves.items():
        ax.plot(c["coverage"], c["accuracy"], label=name)
    ax.set_xlabel("coverage (share of queries answered, most confident first)")
    ax.set_ylabel("accuracy of the answered")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title or "accuracy vs coverage")
    return fig


def pr_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str = "") -> Any:
    """Precision against recall, one line per name: ``{name: (precision, recall)}``."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, (p, r) in curves.items():
        ax.plot(r, p, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title or "precision-recall")
    return fig


def cmc_figure(curves: Mapping[str, Sequence[float]], title: str = "") -> Any:
    """Cumulative match characteristic: share of queries with a right hit within rank r, one line per name."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, cmc in curves.items():
        ax.plot(np.arange(1, len(cmc) + 1), cmc, marker="o", markersize=3, label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "CMC")
    return fig


def trade_off_figure(curves: Mapping[str, Mapping[str, Any]], title: str = "") -> Any:
    """Precision on answered against share of known images answered, one line per name, the calibrated
    default operating point marked."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, c in curves.items():
        pts = c["points"]
        line = ax.plot([p["known_answered"] for p in pts], [p["precision"] for p in pts], marker=".", label=name)
        d = next(p for p in pts if p["target"] == c["default"])
        ax.plot([d["known_answered"]], [d["precision"]], marker="*", markersize=14, color=line[0].get_color())
        ax.annotate(f"default (target {c['default']:.0%})", (d["known_answered"], d["precision"]),
                    textcoords="offset points", xytext=(6, -12))  # fmt: skip
    ax.set_xlabel("known test images answered")
    ax.set_ylabel("precision on answered (known + unknown images)")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title or "precision / coverage trade-off (star: default)")
    return fig


def report_figures(result: Mapping[str, Any]) -> dict[str, Any]:
    """Every plot of an evaluation result (:func:`visrec.eval.runner.evaluate`), by file stem."""
    figs: dict[str, Any] = {}
    coverage, pr, cmc, trade = {}, {}, {}, {}
    for e in result["encoders"]:
        cmc[e["encoder"]] = e["retrieval"]["cmc"]
        for m, d in e["modes"].items():
            name = f"{e['encoder']} {m}"
            stem = f"{e['encoder']}_{m}".replace("/", "_")
            figs[f"confusion_{stem}"] = confusion_figure(d["classification"], f"confusion: {name}")
            figs[f"per_class_{stem}"] = per_class_figure(d["classification"], f"per class: {name}")
            coverage[name] = d["coverage"]
            pr[name] = _correctness_pr(d["coverage"])
            if d.get("trade_off"):
                trade[name] = d["trade_off"]
    figs["coverage"] = coverage_figure(coverage)
    figs["precision_recall"] = pr_figure(pr, "precision-recall of right answers, by confidence")
    figs["cmc"] = cmc_figure(cmc)
    if trade:
        figs["trade_off"] = trade_off_figure(trade)
    return figs


def _correctness_pr(coverage: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """PR of "the answer is right" from a coverage curve: precision = accuracy, recall = right / all right."""
    acc = np.asarray(coverage["accuracy"], np.float64)
    k = np.arange(1, len(acc) + 1)
    right = acc * k
    total = right[-1] if len(right) and right[-1] > 0 else 1.0
    return acc.tolist(), (right / total).tolist()
