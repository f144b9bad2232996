"""Human-readable CLI output with Rich (tables to stdout, progress and errors to stderr).

Both consoles print text literally (``markup=False``): paths, labels and error messages keep their square
brackets (``data/[old]/images``). Styling goes through ``style=`` or :class:`rich.text.Text` parts instead.
"""

from __future__ import annotations

import codecs
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

out = Console(markup=False)
err = Console(stderr=True, markup=False)


def error(msg: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", str(msg)), highlight=False)


def warn(msg: str) -> None:
    err.print(Text.assemble(("warning:", "bold yellow"), " ", str(msg)), highlight=False)


def note(msg: str) -> None:
    """A dim line on stderr (what is happening, e.g. a one-time model export)."""
    err.print(Text(str(msg), style="dim"), highlight=False)


class _Notices(logging.Handler):
    """visrec's warnings, and its one-time notices (model exports), as lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        (warn if record.levelno >= logging.WARNING else note)(record.getMessage())


NOTICE_LOGGERS = ("visrec.encoders.onnx_export",)
"""Loggers whose INFO records are shown (the rest of visrec shows warnings only)."""


def show_notices() -> None:
    """Route visrec's log records to stderr (once per process): warnings, and INFO from ``NOTICE_LOGGERS``."""
    logger = logging.getLogger("visrec")
    if any(isinstance(h, _Notices) for h in logger.handlers):
        return
    handler = _Notices()
    handler.addFilter(lambda r: r.levelno >= logging.WARNING or r.name in NOTICE_LOGGERS)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def _replace_unencodable(e: UnicodeError) -> tuple[bytes, int]:
    """Codec error handler: U+FFFD (``?`` where the stream cannot write that) for each character it cannot encode,
    e.g. the surrogate escape of a byte of a file name that is not UTF-8. Bytes, as the UTF-8 encoder takes only
    ASCII text from a handler."""
    if not isinstance(e, UnicodeEncodeError):
        raise e
    try:
        mark = "\ufffd".encode(e.encoding)
    except UnicodeEncodeError:
        mark = b"?"
    return mark * (e.end - e.start), e.end


def replace_unencodable_output() -> None:
    """Let stdout and stderr print any str: undecodable file-name bytes show as U+FFFD instead of raising (a strict
    locale) or writing bytes that are not text (``surrogateescape``). JSON output stays lossless: it escapes them."""
    codecs.register_error("visrec.replace", _replace_unencodable)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) != "visrec.replace":
            stream.reconfigure(errors="visrec.replace")


@contextmanager
def progress(enabled: bool = True) -> Iterator[Any]:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage on stderr (or doing nothing)."""
    if not enabled:
        yield None
        return
    cols = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
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
        Text.assemble(
            (str(r.path), "bold"),
            f": {r.count} items  (added {r.added}, updated {r.updated}, removed {r.removed}, "
            f"unchanged {r.unchanged}, metadata {r.metadata_updated}, resumed {r.resumed})",
        )
    )
    if r.embedded_per_second:
        prep = r.seconds.get("prepare", 0.0)
        first = f" (not counting {prep:.0f} s preparing the models, once)" if prep >= 5 else ""
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items())
        out.print(f"embedded {r.embedded_per_second:.1f} images/s{first}; time per stage: {stages}")
    for reason, paths in r.skipped.items():
        out.print(
            Text.assemble(
                (f"skipped {len(paths)} {reason}", "yellow"),
                ": " + ", ".join(paths[:3]) + (" …" if len(paths) > 3 else ""),
            )
        )
    if r.calibration:
        for mode, c in r.calibration.items():
            out.print(
                f"calibrated {mode}: precision {_pct(c['precision'])}, coverage {_pct(c['coverage'])}, "
                f"simulated unknowns rejected {_pct(c['unknown_rejected'])}"
            )


def image_hits(queries: Sequence[Path], hits: Sequence[Sequence[Any]], skipped: Sequence[tuple[str, str]] = ()) -> None:
    for path, reason in skipped:
        out.print(Text.assemble(("skipped", "yellow"), f" {path}: {reason}"))
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
    elif res.concepts:
        out.print(
            f"searched the ImageNet-label bridge of {encoder} (everyday objects only, not character or person "
            f"names); query read as: {', '.join(res.concepts)}"
        )
        if res.matches_query is False:
            warn(
                f"none of these images looks like {res.concepts[0]!r} to the bridge: the index probably holds "
                "nothing the query names (see the 'seen as' column); the scores only rank images for this query"
            )
    else:
        out.print(f"searched the image-text space of {encoder}")
    t = Table()
    cols = ("#", "score", "label", "path", *(("seen as",) if res.seen_as else ()))
    for col in cols:
        t.add_column(col)
    for i, h in enumerate(res.hits, 1):
        seen = (", ".join(res.seen_as[i - 1]),) if res.seen_as else ()
        t.add_row(str(i), f"{h.score:.3f}", ", ".join(h.labels) or "-", h.path, *seen)
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
        why = f"{pred.reason}, closest " if pred.reason else ""
        ans = (
            Text(pred.label)
            if pred.label is not None
            else Text.assemble("unknown ", (f"({why}{pred.candidate})", "dim"))
        )
        conf = "-" if math.isnan(pred.calibrated) else f"{pred.calibrated:.2f}"
        truth = ", ".join(res.truths[i]) if res.truths is not None else ""
        t.add_row(name, ans, conf, f"{pred.score:.3f}", truth)
    if show > 0:
        out.print(t)
    if len(res.paths) > show > 0:
        out.print(f"… {len(res.paths) - show} more (use --show or --json)")
    for path, reason in res.skipped:
        out.print(Text.assemble(("skipped", "yellow"), f" {path}: {reason}"))
    for note in res.notes:
        out.print(f"note: {note}", style="dim")
    if res.summary:
        s = res.summary
        out.print(
            Text.assemble(
                (f"{s['n']} labeled images: top-1 {_pct(s['top1'])}, macro-F1 {_pct(s['macro_f1'])}, "
                 f"unknown {_pct(s['unknown_rate'])}", "bold"),
                f" (top-1 before the unknown decision {_pct(s['top1_raw'])}, "
                f"accuracy on answered {_pct(s['accepted_accuracy'])})",
            )
        )  # fmt: skip


def calibration(cals: dict[str, Any]) -> None:
    t = Table(title="calibration")
    for col in ("mode", "method", "target", "precision", "coverage", "unknowns rejected", "met"):
        t.add_column(col)
    for mode, c in cals.items():
        t.add_row(mode, c["method"], _pct(c["target_precision"]), _pct(c["precision"]), _pct(c["coverage"]),
                  _pct(c["unknown_rejected"]), "yes" if c["target_met"] else Text("no", "bold red"))  # fmt: skip
    out.print(t)
    for mode, c in cals.items():
        _target_lines(mode, c)
        if c.get("trade_off"):
            pts = ", ".join(f"{'*' if p['target'] == c['target_precision'] else ''}{p['target']:.0%}: "
                            f"{_pct(p['precision'])}/{_pct(p['coverage'])}" for p in c["trade_off"])  # fmt: skip
            out.print(f"{mode} held-out target -> precision/coverage (* default): {pts}")


def _target_lines(mode: str, c: dict[str, Any]) -> None:
    """Why a calibration misses its target, and the stream its precision is measured on."""
    if c.get("novelty_prior"):
        out.print(f"{mode}: precision measured on held-out known images plus {_pct(c['novelty_prior'])} novel ones")
    for r in c.get("reasons") or ():
        if c["target_met"]:
            out.print(f"{mode}: {r}", style="dim")
        else:
            out.print(f"{mode}: target not met: {r}", style="yellow")


def info(d: dict[str, Any]) -> None:
    out.print(
        Text.assemble(
            (str(d["path"]), "bold"), f": {d['count']} items, store {d['store']}, generation {d['generation']}"
        )
    )
    enc = d["encoder"]
    out.print(
        f"encoder {enc.get('name')} ({enc.get('fingerprint')}), precision {d.get('precision', 'f32')}, "
        f"dim {d['dim']}, joint dim {d['joint_dim']}"
    )
    t = Table()
    t.add_column("label")
    t.add_column("images", justify="right")
    for lab, n in d["labels"].items():
        t.add_row(lab, str(n))
    if d["unlabeled"]:
        t.add_row("(unlabeled)", str(d["unlabeled"]))
    out.print(t)
    km = d.get("knn_metric") or {}
    fit = f"fitted on {km.get('fitted_items')} items, rank {km.get('rank')}" if km.get("fitted") else km.get("reason")
    out.print(f"kNN metric: {km.get('metric')} (whitening {fit})")
    for mode, c in d["calibration"].items():
        met = "met" if c.get("target_met") else "NOT met"
        out.print(
            f"calibrated {mode}: precision {_pct(c['precision'])} (target {_pct(c.get('target_precision'))}, {met}), "
            f"coverage {_pct(c['coverage'])}, novel rejected {_pct(c.get('unknown_rejected'))}"
        )
        _target_lines(mode, c)
        if c.get("trade_off"):
            pts = ", ".join(f"{'*' if p['target'] == c['target_precision'] else ''}{p['target']:.0%}: "
                            f"{_pct(p['precision'])}/{_pct(p['coverage'])}" for p in c["trade_off"])  # fmt: skip
            out.print(f"{mode} held-out target -> precision/coverage (* default): {pts}")


def data_check(d: dict[str, Any]) -> None:
    from visrec.data import describe_splits

    out.print(
        Text.assemble((str(d["path"]), "bold"), f" ({d['format']}): {d['images']} images, {len(d['classes'])} classes")
    )
    out.print("classes: " + ", ".join(f"{c} {n}" for c, n in d["classes"].items()))
    out.print("splits: " + describe_splits(d["splits"], d["no_split"], d["split_field"]), highlight=False)
    for p, reason in d["unreadable"]:
        out.print(Text.assemble(("unreadable", "yellow"), f" {p}: {reason}"))
    nd = d["near_duplicates"]
    out.print(f"near-duplicates (<= {nd['threshold']} bits): {nd['groups']} groups, "
              f"{nd['images_in_groups_of_2_or_more']} images share a group")  # fmt: skip
    leak = d.get("leakage")
    if leak:
        style = "bold red" if leak["n_leaked"] else "green"
        out.print(f"leakage: {leak['n_leaked']} of {leak['n_test']} test images have a near-duplicate in train",
                  style=style)  # fmt: skip
        if leak["n_leaked"]:
            out.print("  accuracy on this split measures memorisation; write a grouped split with --write-split")
    if d.get("written"):
        out.print(f"wrote {d['written']} with a leak-free grouped_split column")


def demo(res: Any) -> None:
    for line in res.lines():
        out.print(line, style="bold" if " classifier on the test split" in line else None)


def prepared(models: Sequence[Any]) -> None:
    """One line per cached model file (``visrec prepare-models``): size, exported now or already there, sha256."""
    for m in models:
        folder = m.files[0].path.parent if m.files else "-"
        out.print(f"{m.name}: ready in {m.seconds:.1f} s (model cache: {folder})", soft_wrap=True)
        for f in m.files:
            state = "exported now" if f.created else "already there"
            line = f"  {f.path.name}  {f.size_bytes / 2**20:.1f} MB  {state}  sha256 {f.sha256[:12]}"
            out.print(line, soft_wrap=True, highlight=False)
