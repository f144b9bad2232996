"""Write an evaluation to disk: ``eval.json`` (stable keys), ``report.html`` (self-contained) and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(x: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), floats rounded to 6 digits, recursively."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, 6)
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_report(result: dict[str, Any], out_dir: Path, save_plots: bool = True) -> dict[str, str]:
    """Write the JSON, the HTML report and (``save_plots``) one PNG per plot under ``out_dir``; their paths."""
    from visrec.eval.plots import report_figures
    from visrec.eval.report import render_html

    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"json": str(out_dir / "eval.json"), "html": str(out_dir / "report.html")}
    (out_dir / "eval.json").write_text(json.dumps(_clean(result), indent=1, sort_keys=True) + "\n")
    figures = report_figures(result)
    (out_dir / "report.html").write_text(render_html(result, figures), encoding="utf-8")
    if save_plots:
        (out_dir / "plots").mkdir(exist_ok=True)
        for name, fig in figures.items():
            fig.savefig(out_dir / "plots" / f"{name}.png", format="png")
        written["plots"] = str(out_dir / "plots")
    return written
