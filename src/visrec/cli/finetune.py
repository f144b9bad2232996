"""``visrec finetune`` and ``visrec reproject``: adapt the embedding to the user's labels, then re-project an index.

Register on the main app with one line: ``visrec.cli.finetune.register(app)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from visrec import render
from visrec.cli.common import command, print_json, split_names
from visrec.errors import BadInput, MissingExtra

METHOD_HELP = (
    "linear | mlp (classifier heads, cross-entropy) | arcface | triplet | infonce | supcon (metric projections) | "
    "lit (text head: text queries land near the right images)"
)
FIGURES = ("top1", "macro_f1", "r_at_1", "map_at_r")
LIT_FIGURES = ("t2i_r_at_1", "t2i_r_at_5", "t2i_map_at_r", "i2t_top1", "i2t_macro_f1")


_command = command("interrupted; no adapter was written")


def _print(res: Any, out: Path, reprojected: dict[str, Any] | None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    sp = res.split
    render.out.print(f"split: {sp['rule']} ({sp['train']} train, {sp['val']} val, {sp['test']} test images; "
                     f"{len(sp['classes'])} labels)", highlight=False)  # fmt: skip
    cols = LIT_FIGURES if res.method == "lit" else FIGURES
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("embedding")
    for c in cols:
        table.add_column(c, justify="right")
    for row in res.rows():
        table.add_row(row["what"], *[f"{100 * row[c]:.1f}%" if c in row else "-" for c in cols])
    # Piped output has no terminal width to respect: keep every row on one line.
    (render.out if render.out.is_terminal else Console(width=200, markup=False)).print(table)
    if res.views:
        v = res.views
        render.out.print(f"style views: {v['views']} of {v['images']} images encoded in {v['seconds']:.1f} s "
                         f"({v['megabytes']:.1f} MB of vectors, peak memory {v['peak_rss_mb']:.0f} MB); "
                         f"{v['skipped']} images missing, skipped", highlight=False)  # fmt: skip
    t = res.training
    render.out.print(f"trained {t.epochs} epochs in {t.seconds:.1f} s, kept epoch {t.best_epoch}; {t.stopped}",
                     highlight=False)  # fmt: skip
    render.out.print(f"adapter: {out}  (fingerprint {res.adapter.fingerprint()})", highlight=False)
    if reprojected:
        render.out.print(f"re-projected index: {reprojected['path']} ({reprojected['count']} items)", highlight=False)
        if reprojected.get("calibration"):
            render.out.print(_calibrated_on(reprojected), highlight=False)


@_command
def finetune_cmd(
    source: Path = typer.Argument(..., help="Index folder, or a labeled dataset (it is indexed once into --index)."),
    method: str = typer.Option("linear", "--method", "-m", help=METHOD_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Adapter folder to write (adapter.safetensors + adapter.json)."),
    index: Path = typer.Option(
        None,
        "--index",
        help="With a dataset: index folder to embed it into (default: OUT/base.vrx; reused by later runs).",
    ),
    encoder: str = typer.Option(None, "--encoder", help="With a dataset: encoder (default: efficientnet-lite0)."),
    fmt: str = typer.Option(None, "--format", help="With a dataset: folders | roboflow | manifest (default: detect)."),
    where: str = typer.Option(None, "--where", help="With a dataset: filter expression applied first."),
    split_field: str = typer.Option(
        "auto",
        "--split-field",
        help="Split of the test images: 'auto' (grouped_split "
        "if present, else a leak-free near-duplicate-grouped split) or a field name.",
    ),
    train: str = typer.Option("train,valid", "--train", help="Train values of --split-field."),
    test: str = typer.Option("test", "--test", help="Test values of --split-field."),
    dim: int = typer.Option(256, "--dim", min=2, help="Width of the adapted embedding."),
    head: str = typer.Option("linear", "--head", help="Projection of the metric methods: linear | mlp."),
    epochs: int = typer.Option(60, "--epochs", min=1, help="Most epochs (early stopping usually ends sooner)."),
    patience: int = typer.Option(10, "--patience", min=1, help="Epochs without validation gain before stopping."),
    lr: float = typer.Option(
        None, "--lr", min=1e-8, help="Peak learning rate (warm-up, then cosine decay); 1e-3, or 1e-4 with --unfreeze."
    ),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", min=0.0),
    batch_size: int = typer.Option(128, "--batch-size", min=2),
    miner: str = typer.Option(
        "semi-hard", "--miner", help="Triplet mining: semi-hard | batch-hard (can collapse on noisy labels) | all."
    ),
    margin: float = typer.Option(None, "--margin", help="ArcFace margin in degrees (28.6) / triplet margin (0.2)."),
    temperature: float = typer.Option(None, "--temperature", help="InfoNCE / SupCon temperature (0.1)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Same seed, same data -> same adapter."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    guard: bool = typer.Option(True, "--guard/--no-guard", help="Stop when the embedding collapses."),
    reproject: Path = typer.Option(None, "--reproject", help="Also write the index re-projected with the adapter."),
    unfreeze: int = typer.Option(
        0,
        "--unfreeze",
        min=0,
        help="Fine-tune the encoder itself: train its last N blocks (EfficientNet-Lite encoders) and save them as "
        "an encoder in --out (use it as --encoder finetuned, or with --reindex).",
    ),
    views: int = typer.Option(4, "--views", min=1, help="With --unfreeze: views per image (plain, mirror, styles)."),
    reindex: Path = typer.Option(None, "--reindex", help="With --unfreeze: also write the index re-encoded with it."),
    style_views: int = typer.Option(
        0,
        "--style-views",
        help="Head methods: render each train / val image in N styles (sketch, cartoon, ...), encode them with the "
        "index's encoder and train on them as extra views of the image (0: the indexed vectors only).",
    ),
    styles: str = typer.Option(
        None,
        "--styles",
        help="With --style-views: styles to draw from, comma-separated (default: greyscale, sketch, posterize, "
        "cartoon, blur, jitter).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch lines."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON result instead of a table."),
) -> None:
    """Train a small head on the frozen encoder's cached embeddings; print before/after figures on the same
    leak-free test split; save the adapter (and optionally re-project the index with it)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise MissingExtra("torch", "train", "visrec finetune")
    from visrec.train import FinetuneConfig, GuardConfig, LoopConfig, LossOptions, SplitOptions, save_adapter
    from visrec.train.reproject import reproject_index
    from visrec.train.run import LIT, finetune, finetune_lit, prepare_index
    from visrec.train.style_views import HEAD_STYLES

    split = SplitOptions(split_field, split_names(train), split_names(test))
    with render.progress(enabled=not as_json) as bar:
        idx = prepare_index(source, index or out / "base.vrx", fmt, where, encoder, bar)
    if unfreeze:
        from visrec.train.tail import TailConfig

        if style_views:
            raise BadInput("--style-views is for the head methods; with --unfreeze use --views (plain, mirror, styles)")

        tail = TailConfig(
            unfreeze=unfreeze, epochs=epochs, patience=min(patience, 5), lr=lr or 1e-4, weight_decay=weight_decay,
            views=views, seed=seed, guard=GuardConfig(enabled=guard), device=device,
        )  # fmt: skip
        _backbone(idx, out, tail, split, reindex, as_json)
        return
    cfg = FinetuneConfig(
        method=method, out_dim=dim, head=head,
        loss=LossOptions(margin=margin, temperature=temperature, miner=miner),
        loop=LoopConfig(epochs=epochs, batch_size=batch_size, lr=lr or 1e-3, weight_decay=weight_decay,
                        patience=patience, seed=seed, device=device, guard=GuardConfig(enabled=guard)),
        split=split, style_views=style_views, styles=split_names(styles) if styles is not None else HEAD_STYLES,
    )  # fmt: skip
    log = None if quiet or as_json else (lambda line: render.err.print(line, highlight=False, soft_wrap=True))
    if method == LIT:
        res = finetune_lit(idx, cfg, log=log)
    else:
        with render.progress(enabled=not as_json) as bar:
            res = finetune(idx, cfg, log, bar)
    save_adapter(res.adapter, out)
    done = reproject_index(idx, res.adapter, reproject) if reproject else None
    if as_json:
        print_json(res.to_dict() | {"index": str(idx), "reprojected": done})
    else:
        _print(res, out, done)


def _backbone(idx: Path, out: Path, cfg: Any, split: Any, reindex: Path | None, as_json: bool) -> None:
    """The ``--unfreeze`` path: fine-tune the encoder's last blocks, save it, optionally re-encode the index."""
    from visrec.encoders import create_encoder
    from visrec.train.backbone_run import finetune_encoder, reencode_index

    res = finetune_encoder(idx, out, cfg, split)
    done = reencode_index(idx, create_encoder("finetuned", model=str(out)), reindex) if reindex else None
    if as_json:
        print_json(res | {"index": str(idx), "reindexed": done})
        return
    t = res["training"]
    render.out.print(f"split: {res['split']['rule']} ({res['split']['train']} train, {res['split']['val']} val, "
                     f"{res['split']['test']} test images)", highlight=False)  # fmt: skip
    for what in ("before", "after"):
        f = res[what]
        render.out.print(f"{what:7s} kNN top-1 {100 * f['top1']:.1f}%  macro-F1 {100 * f['macro_f1']:.1f}%  "
                         f"mAP@R {100 * f['map_at_r']:.1f}%", highlight=False)  # fmt: skip
    render.out.print(f"trained {t['epochs']} epochs ({t['trainable_parameters']:,} parameters) in "
                     f"{t['seconds_activations'] + t['seconds_training']:.0f} s, kept epoch {t['best_epoch']}; "
                     f"{t['stopped']}; peak memory {res['peak_rss_mb']:.0f} MB", highlight=False)  # fmt: skip
    render.out.print(f"encoder: {out} (fingerprint {res['encoder']}); use it with --encoder {out}",
                     highlight=False)  # fmt: skip
    if done:
        render.out.print(f"re-encoded index: {done['path']} ({done['count']} items)", highlight=False)
        if done.get("calibration"):
            render.out.print(_calibrated_on(done, "fine-tuned encoder"), highlight=False)


@_command
def reproject_cmd(
    index: Path = typer.Argument(..., help="Index folder built with the adapter's base encoder."),
    adapter: Path = typer.Option(..., "--adapter", "-a", help="Adapter folder written by visrec finetune."),
    out: Path = typer.Option(..., "--out", "-o", help="New index folder to write."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Recalibrate unknown thresholds."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write a new index whose vectors are INDEX's projected by the adapter (labels and metadata kept); queries
    to it go through the base encoder and the adapter."""
    from visrec.train import load_adapter, reproject_index

    done = reproject_index(index, load_adapter(adapter), out, calibrate)
    if as_json:
        print_json(done)
    else:
        render.out.print(f"{done['path']}: {done['count']} items, {done['dim']}-d, encoder {done['encoder']}")
        if done.get("calibration"):
            render.out.print(_calibrated_on(done), highlight=False)


def _calibrated_on(done: dict[str, Any], model: str = "adapter") -> str:
    """Which items a re-projected (re-encoded) index's calibration held out (see :mod:`visrec.train.reproject`)."""
    held = done.get("calibration_queries")
    if held:
        return f"calibrated on the {held} labeled items the {model} never saw"
    return f"calibrated on every item (the {model} records too few others): its figures may be optimistic"


def register(app: typer.Typer) -> None:
    """Add ``finetune`` and ``reproject`` to the main CLI app."""
    app.command("finetune")(finetune_cmd)
    app.command("reproject")(reproject_cmd)


app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None, help="visrec fine-tuning commands."
)
register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
