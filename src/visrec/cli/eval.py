"""``visrec eval`` and ``visrec compare``: evaluate encoders and classifier modes on a labeled split.

Register on the main app with one line: ``visrec.cli.eval.register(app)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from visrec import render
from visrec.cli.common import command, print_json, split_names

SOURCE = typer.Argument(..., help="Labeled dataset (a temporary index is built per encoder) or an index folder.")
DATA = typer.Option(None, "--data", help="With an index: the labeled dataset holding the test images.")
SPLIT = typer.Option(
    "auto", "--split-field", help="Field or manifest column with the split (split, grouped_split...), or 'auto': "
    "grouped_split if present, else a leak-free split from near-duplicate groups; 'regroup': always that split."
)  # fmt: skip
TRAIN = typer.Option("train,valid", "--train", help="Comma-separated train values of the split field.")
TEST = typer.Option("test", "--test", help="Comma-separated test values of the split field.")
ENCODERS = typer.Option("efficientnet-lite0", "--encoder", "-e", help="Comma-separated encoder names.")
UNKNOWN = typer.Option(None, "--unknown", help="Images of none of the classes (folder or file; repeatable).")
OUT = typer.Option(Path("eval-report"), "--out", "-o", help="Folder for eval.json, report.html and plots/.")
RAW = typer.Option(False, "--raw", help="Skip the calibrated unknown decision.")
STORE = typer.Option("exact", "--store", help="Vector store of the temporary indexes: exact | faiss.")
WIDE = typer.Option(False, "--wide", help="Print every column (latency, memory, index size) in the terminal.")
WHERE = typer.Option(None, "--where", help="Filter expression applied to the dataset first.")
PLOTS = typer.Option(True, "--plots/--no-plots", help="Also save each plot as a PNG.")
JSON = typer.Option(False, "--json", help="Print the JSON result instead of a table.")


_command = command("interrupted; no report was written")


def _unknown_files(paths: list[Path] | None) -> tuple[Path, ...]:
    from visrec.data import is_image_file

    files: list[Path] = []
    for p in paths or []:
        files += sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f)) if p.is_dir() else [p]
    return tuple(files)


def _print_table(result: dict[str, Any], written: dict[str, str], wide: bool = False) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from visrec.eval.report import LEGEND, TERMINAL_KEYS, format_table

    for w in result["warnings"]:
        render.out.print(w, style="bold red", highlight=False)
    sp = result["split"]
    left = f"; {sp['no_split']} with no split value, left out" if sp["no_split"] else ""
    render.out.print(f"split: {sp['rule']} ({sp['train']} train, {sp['test']} test{left})", highlight=False)
    cells = format_table(result["table"], None if wide else TERMINAL_KEYS)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for j, title in enumerate(cells[0]):
        table.add_column(title, justify="left" if j < 2 else "right", overflow="fold")
    for row in cells[1:]:
        table.add_row(*row)
    # Piped output has no terminal width to respect: keep every row on one line.
    (render.out if render.out.is_terminal else Console(width=200, markup=False)).print(table)
    render.out.print(LEGEND, style="dim", highlight=False)
    _print_trade_off(result)
    more = "" if wide else " (--wide: every column)"
    render.out.print(f"report: {written['html']}  json: {written['json']}{more}", highlight=False)


def _print_trade_off(result: dict[str, Any]) -> None:
    """One line per mode: precision / known answered / unknown rejected at each target, default marked."""
    for e in result["encoders"]:
        for m, d in e["modes"].items():
            t = d.get("trade_off")
            if not t:
                continue
            has_unknown = any(_finite(p["unknown_rejected"]) for p in t["points"])
            pts = [f"{'*' if p['target'] == t['default'] else ''}{p['target']:.1%}: "
                   f"{p['precision']:.1%}/{p['known_answered']:.1%}"
                   + (f"/{p['unknown_rejected']:.1%}" if has_unknown else "") for p in t["points"]]  # fmt: skip
            what = "precision/known answered" + ("/unknown rejected" if has_unknown else "")
            render.out.print(f"{m} target -> {what} (* default, change with classify --target-precision): "
                             + ", ".join(pts), highlight=False)  # fmt: skip
            render.out.print(_default_line(m, t), highlight=False)


def _default_line(mode: str, t: dict[str, Any]) -> str:
    """Where the default's unknowns come from, and how many known images the best threshold on this test stream
    would answer at the same precision (the ceiling of the confidence ranking)."""
    p = next(x for x in t["points"] if x["target"] == t["default"])
    r = t.get("unknown_reasons", {})
    return (f"{mode} at the default: known test images unknown as novel {r.get('novel', float('nan')):.1%}, "
            f"ambiguous {r.get('ambiguous', float('nan')):.1%}; the best threshold on this test stream answers "
            f"{p.get('best_known_answered', float('nan')):.1%} of them at {t['default']:.1%} precision "
            f"(calibrated: {p['known_answered']:.1%})")  # fmt: skip


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def _run(source: Path, data: Path | None, split_field: str, train: str, test: str, modes: str, encoders: str,
         unknown: list[Path] | None, out: Path, raw: bool, store: str, where: str | None, plots: bool,
         as_json: bool, wide: bool = False) -> None:  # fmt: skip
    from visrec.eval.outputs import write_report
    from visrec.eval.runner import EvalConfig, evaluate_source

    cfg = EvalConfig(modes=split_names(modes), encoders=split_names(encoders), store=store, calibrate=not raw,
                     unknown=_unknown_files(unknown))  # fmt: skip
    result = evaluate_source(source, cfg, split_field, split_names(train), split_names(test), data, where)
    written = write_report(result, out, plots)
    if as_json:
        saved = json.loads(Path(written["json"]).read_text())
        print_json(saved | {"written": written})
    else:
        _print_table(result, written, wide)


@_command
def eval_cmd(
    source: Path = SOURCE,
    data: Path = DATA,
    split_field: str = SPLIT,
    train: str = TRAIN,
    test: str = TEST,
    modes: str = typer.Option(
        "auto",
        "--mode",
        "-m",
        help="Comma-separated modes: auto (linear on a calibrated index, else knn), knn, "
        "prototype, linear, zeroshot, blend.",
    ),
    encoders: str = ENCODERS,
    unknown: list[Path] = UNKNOWN,
    out: Path = OUT,
    raw: bool = RAW,
    store: str = STORE,
    where: str = WHERE,
    plots: bool = PLOTS,
    as_json: bool = JSON,
    wide: bool = WIDE,
) -> None:
    """Evaluate on a labeled split: accuracy, per-class F1, confusion, coverage, retrieval (top-k, 1000-point
    score, mAP@R, CMC), open-set rejection, speed and memory; writes eval.json and a self-contained report.html."""
    _run(source, data, split_field, train, test, modes, encoders, unknown, out, raw, store, where, plots, as_json, wide)


@_command
def compare_cmd(
    source: Path = SOURCE,
    data: Path = DATA,
    split_field: str = SPLIT,
    train: str = TRAIN,
    test: str = TEST,
    modes: str = typer.Option("knn,prototype,zeroshot,blend", "--modes", "-m", help="Comma-separated modes."),
    encoders: str = ENCODERS,
    unknown: list[Path] = UNKNOWN,
    out: Path = typer.Option(Path("compare-report"), "--out", "-o", help="Folder for eval.json and report.html."),
    raw: bool = RAW,
    store: str = STORE,
    where: str = WHERE,
    plots: bool = PLOTS,
    as_json: bool = JSON,
    wide: bool = WIDE,
) -> None:
    """Compare classifier modes and/or encoders side by side on the same split: one table, one report."""
    if len(split_names(modes)) * len(split_names(encoders)) < 2:
        raise typer.BadParameter("compare needs at least two modes or two encoders (e.g. --modes knn,prototype)")
    _run(source, data, split_field, train, test, modes, encoders, unknown, out, raw, store, where, plots, as_json, wide)


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``compare`` to the main CLI app."""
    app.command("eval")(eval_cmd)
    app.command("compare")(compare_cmd)


app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None, help="visrec evaluation commands.")
register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
