"""Human-readable CLI output with Rich (tables to stdout, progress and errors to stderr)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

out = Console()
err = Console(stderr=True)


def error(msg: str) -> None:
    err.print(f"[bold red]error:[/] {msg}", highlight=False)


def warn(msg: str) -> None:
    err.print(f"[bold yellow]warning:[/] {msg}", highlight=False)


@contextmanager
def progress(enabled: bool = True) -> Iterator[Any]:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage on stderr (or doing nothing)."""
    if not enabled:
        yield None
        return
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _pct(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def indexing_report(r: Any) -> None:
    out.print(
        f"[bold]{r.path}[/]: {r.count} items  (added {r.added}, updated {r.updated}, removed {r.removed}, "
        f"unchanged {r.unchanged}, metadata {r.metadata_updated}, resumed {r.resumed})"
    )
    if r.embedded_per_second:
        out.print(f"embedded {r.embedded_per_second:.1f} images/s; stages: {r.seconds}")
    for reason, paths in r.skipped.items():
        out.print(
            f"[yellow]skipped {len(paths)} {reason}[/]: " + ", ".join(paths[:3]) + (" …" if len(paths) > 3 else "")
        )
    if r.calibration:
        for mode, c in r.calibration.items():
            out.print(
                f"calibrated {mode}: precision {_pct(c['precision'])}, coverage {_pct(c['coverage'])}, "
                f"simulated unknowns rejected {_pct(c['unknown_rejected'])}"
            )


def image_hits(queries: Sequence[Path], hits: Sequence[Sequence[Any]]) -> None:
    for q, hs in zip(queries, hits, strict=True):
        t = Table(title=str(q))
        for col in ("#", "score", "label", "path"):
            t.add_column(col)
        for i, h in enumerate(hs, 1):
            t.add_row(str(i), f"{h.score:.3f}", ", ".join(h.labels) or "-", h.path)
        out.print(t)


def text_hits(res: Any, encoder: str) -> None:
    if res.route == "labels" and res.matched:
        names = ", ".join(f"{n} ({s:.2f})" for n, s in res.matched)
        out.print(f"query matched the label(s) {names}; images of those labels, most typical first:")
    elif res.route == "labels":
        out.print("no label name matches the query")
    else:
        out.print(
            f"searched the image-text space of {encoder}"
            + (
                " (ImageNet-label bridge: everyday objects only, not character or person names)"
                if "efficientnet" in encoder or "mobilenet" in encoder
                else ""
            )
        )
    t = Table()
    for col in ("#", "score", "label", "path"):
        t.add_column(col)
    for i, h in enumerate(res.hits, 1):
        t.add_row(str(i), f"{h.score:.3f}", ", ".join(h.labels) or "-", h.path)
    out.print(t)


def short_paths(paths: list[str]) -> list[str]:
    """The fewest trailing path parts that tell the rows apart (``cat/0.jpg`` and ``dog/0.jpg``, not ``0.jpg``)."""
    parts = [Path(p).parts for p in paths]
    longest = max((len(q) for q in parts), default=1)
    for n in range(1, longest + 1):
        tails = ["/".join(q[-n:]) for q in parts]
        if len(set(tails)) == len(set(paths)):
            return tails
    return list(paths)


def classification(res: Any, show: int) -> None:
    t = Table()
    for col in ("path", "answer", "confidence", "score", "truth"):
        t.add_column(col)
    names = short_paths(res.paths)
    for i, (name, pred) in enumerate(zip(names, res.predictions, strict=True)):
        if i >= show:
            break
        ans = pred.label if pred.label is not None else f"unknown [dim]({pred.candidate})[/]"
        conf = "-" if math.isnan(pred.calibrated) else f"{pred.calibrated:.2f}"
        truth = ", ".join(res.truths[i]) if res.truths is not None else ""
        t.add_row(name, ans, conf, f"{pred.score:.3f}", truth)
    if show > 0:
        out.print(t)
    if len(res.paths) > show > 0:
        out.print(f"… {len(res.paths) - show} more (use --show or --json)")
    for path, reason in res.skipped:
        out.print(f"[yellow]skipped[/] {path}: {reason}")
    for note in res.notes:
        out.print(f"[dim]note: {note}[/]")
    if res.summary:
        s = res.summary
        out.print(
            f"[bold]{s['n']} labeled images: top-1 {_pct(s['top1'])}, macro-F1 {_pct(s['macro_f1'])}, "
            f"unknown {_pct(s['unknown_rate'])}[/] (top-1 before the unknown decision {_pct(s['top1_raw'])}, "
            f"accuracy on answered {_pct(s['accepted_accuracy'])})"
        )


def calibration(cals: dict[str, Any]) -> None:
    t = Table(title="calibration")
    for col in ("mode", "method", "target", "precision", "coverage", "unknowns rejected", "met"):
        t.add_column(col)
    for mode, c in cals.items():
        t.add_row(mode, c["method"], _pct(c["target_precision"]), _pct(c["precision"]), _pct(c["coverage"]),
                  _pct(c["unknown_rejected"]), "yes" if c["target_met"] else "no")  # fmt: skip
    out.print(t)


def info(d: dict[str, Any]) -> None:
    out.print(f"[bold]{d['path']}[/]: {d['count']} items, store {d['store']}, generation {d['generation']}")
    enc = d["encoder"]
    out.print(f"encoder {enc.get('name')} ({enc.get('fingerprint')}), dim {d['dim']}, joint dim {d['joint_dim']}")
    t = Table()
    t.add_column("label")
    t.add_column("images", justify="right")
    for lab, n in d["labels"].items():
        t.add_row(lab, str(n))
    if d["unlabeled"]:
        t.add_row("(unlabeled)", str(d["unlabeled"]))
    out.print(t)
    for mode, c in d["calibration"].items():
        out.print(f"calibrated {mode}: precision {_pct(c['precision'])}, coverage {_pct(c['coverage'])}")


def data_check(d: dict[str, Any]) -> None:
    out.print(f"[bold]{d['path']}[/] ({d['format']}): {d['images']} images, {len(d['classes'])} classes")
    out.print("classes: " + ", ".join(f"{c} {n}" for c, n in d["classes"].items()))
    out.print("splits: " + ", ".join(f"{s} {n}" for s, n in d["splits"].items()))
    for p, reason in d["unreadable"]:
        out.print(f"[yellow]unreadable[/] {p}: {reason}")
    nd = d["near_duplicates"]
    out.print(f"near-duplicates (<= {nd['threshold']} bits): {nd['groups']} groups, "
              f"{nd['images_in_groups_of_2_or_more']} images share a group")  # fmt: skip
    leak = d.get("leakage")
    if leak:
        style = "bold red" if leak["n_leaked"] else "green"
        out.print(f"[{style}]leakage: {leak['n_leaked']} of {leak['n_test']} test images have a near-duplicate "
                  f"in train[/]")  # fmt: skip
        if leak["n_leaked"]:
            out.print("  accuracy on this split measures memorisation; write a grouped split with --write-split")
    if d.get("written"):
        out.print(f"wrote {d['written']} with a leak-free grouped_split column")


def demo(res: Any) -> None:
    for line in res.lines():
        out.print(line)
