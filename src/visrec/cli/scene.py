"""``visrec scene``, ``scene-eval`` and ``scene-gen``: recognise every region of a scene against an index.

Register on the main app with one line: ``visrec.cli.scene.register(app)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from visrec import render
from visrec.cli.common import command, print_json
from visrec.errors import BadInput

INDEX = typer.Argument(..., help="Index folder built with: visrec index DATASET --out INDEX.")
SEGMENTER = typer.Option(
    "gallery",
    "--segmenter",
    "-s",
    help="gallery (windows like the index's images) | faces (one region per detected face; faces extra) | "
    "proposals | nanodet (COCO object boxes) | mobilesam (MobileSAM masks) | sam; see docs/scene.md.",
)
LONG_SIDE = typer.Option(1024, "--long-side", help="Shrink the image so its longer side is at most this (0: never).")
MODE = typer.Option("knn", "--mode", "-m", help="Classifier mode of the index: knn | prototype.")
MIN_SCORE = typer.Option(0.0, "--min-score", help="Drop labelled regions whose confidence is below this.")
UNKNOWN = typer.Option(False, "--unknown/--no-unknown", help="Also report regions recognised as nobody.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")
ACCEPT = typer.Option(
    "confidence",
    "--accept",
    help="confidence: each region whose open-set confidence on the index (P(a known object, rightly named), "
    "fitted on the index's own held-out images) is >= --min-confidence | calibrated: each region by the index's "
    "open-set decision at its stored threshold | absolute: each region whose raw score is >= --floor | relative: "
    "keep regions scoring near the scene's best (and >= --floor).",
)
MARGIN = typer.Option(0.02, "--margin", help="relative: keep regions within this raw score of the scene's best.")
MIN_CONF = typer.Option(0.6, "--min-confidence", help="confidence: the lowest open-set confidence that names a region.")
FLOOR = typer.Option(
    0.8,
    "--floor",
    help="relative, absolute (and the others on an index without an open-set decision): the lowest raw score.",
)


_command = command("interrupted; nothing was written")


def _analyzer(index: Path, segmenter: str, config: Any) -> Any:
    from visrec.index import Index
    from visrec.segment import create_segmenter
    from visrec.segment.scene import SceneAnalyzer

    idx = Index(index)
    seg = create_segmenter(segmenter, index=idx) if segmenter == "gallery" else create_segmenter(segmenter)
    return SceneAnalyzer(idx, seg, config)


def _config(**fields: Any) -> Any:
    from visrec.segment.scene import SceneConfig

    return SceneConfig(**fields)


@_command
def scene_cmd(
    index: Path = INDEX,
    image: Path = typer.Argument(..., help="The scene image."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the annotated image here (PNG/JPEG)."),
    coco: Path = typer.Option(None, "--coco", help="Write COCO-style detections JSON here."),
    segmenter: str = SEGMENTER,
    long_side: int = LONG_SIDE,
    mode: str = MODE,
    min_score: float = MIN_SCORE,
    unknown: bool = UNKNOWN,
    accept: str = ACCEPT,
    margin: float = MARGIN,
    floor: float = FLOOR,
    min_confidence: float = MIN_CONF,
    as_json: bool = JSON,
) -> None:
    """Find the regions of IMAGE and recognise each against INDEX ("Naruto here, Sakura there")."""
    from visrec.data.images import load_image
    from visrec.segment.draw import annotate

    rgb = load_image(image)
    cfg = _config(
        long_side=long_side,
        mode=mode,
        min_score=min_score,
        keep_unknown=unknown,
        accept=accept,
        margin=margin,
        floor=floor,
        min_confidence=min_confidence,
    )
    result = _analyzer(index, segmenter, cfg).analyze(rgb)
    if out is not None:
        annotate(rgb, result).save(out)
    if coco is not None:
        coco.write_text(json.dumps(result.to_coco(image.name), indent=1))
    if as_json:
        print_json(result.to_dict() | {"image": str(image)})
        return
    render.out.print(f"{image}: {result.width}x{result.height}, {len(result)} region(s)", highlight=False)
    for r in result.to_dict()["regions"]:
        render.out.print(f"  {r['label'] or 'unknown':<16} {r['score']:.2f}  box {r['box']}", highlight=False)
    if out is not None:
        render.out.print(f"annotated: {out}", highlight=False)


@_command
def scene_eval_cmd(
    index: Path = INDEX,
    scenes: Path = typer.Argument(..., help="Folder of scene images (or holding images/)."),
    labels: Path = typer.Option(None, "--labels", help="JSON {file: [labels]} (default: SCENES/manual_labels.json)."),
    segmenter: str = SEGMENTER,
    long_side: int = LONG_SIDE,
    mode: str = MODE,
    min_score: float = MIN_SCORE,
    all_files: bool = typer.Option(False, "--all-files", help="Also score byte-identical duplicate scenes."),
    accept: str = ACCEPT,
    margin: float = MARGIN,
    floor: float = FLOOR,
    min_confidence: float = MIN_CONF,
    as_json: bool = JSON,
) -> None:
    """Presence precision / recall / F1 over labelled scenes; with boxed scenes (SCENES/annotations.json, as
    written by scene-gen), also box recall / precision at IoU 0.5, label accuracy and the strangers named."""
    from visrec.segment.evaluate import evaluate_presence, load_labels

    cfg = _config(
        long_side=long_side,
        mode=mode,
        min_score=min_score,
        accept=accept,
        margin=margin,
        floor=floor,
        min_confidence=min_confidence,
    )
    analyzer = _analyzer(index, segmenter, cfg)
    coco = scenes / "annotations.json"
    if labels is None and not (scenes / "manual_labels.json").is_file() and coco.is_file():
        _box_eval(analyzer, coco, as_json)
        return
    rep = evaluate_presence(
        analyzer, scenes, load_labels(labels or scenes / "manual_labels.json"), min_score, not all_files
    )
    if as_json:
        print_json(rep.to_dict())
        return
    for s in rep.scenes:
        render.out.print(f"{s['file']:<20} truth {s['truth']}  found {s['found']}", highlight=False)
    for name, m in [*rep.per_class.items(), ("micro", rep.micro)]:
        render.out.print(
            f"{name:<10} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}  "
            f"(tp {m['tp']}, fp {m['fp']}, fn {m['fn']})",
            highlight=False,
        )
    render.out.print(f"{len(rep.scenes)} scenes, {rep.seconds:.2f} s per scene", highlight=False)


def _box_eval(analyzer: Any, coco: Path, as_json: bool) -> None:
    from visrec.segment.box_eval import evaluate_boxes

    rep = evaluate_boxes(analyzer, coco)
    if as_json:
        print_json(rep.to_dict())
        return
    m, p = rep.metrics, rep.presence
    render.out.print(
        f"boxes @ IoU 0.5: recall {m['recall']:.3f}  precision {m['precision']:.3f}  label accuracy "
        f"{m['label_accuracy']:.3f}  (objects {m['objects']}, named regions {m['regions']})\n"
        f"with the right label: recall {m['correct_recall']:.3f}  precision {m['correct_precision']:.3f}  "
        f"F1 {m['correct_f1']:.3f}\npresence: P {p['precision']:.3f}  R {p['recall']:.3f}  F1 {p['f1']:.3f}\n"
        f"{rep.scenes} scenes, {rep.seconds:.2f} s per scene",
        highlight=False,
    )
    if m["strangers"]:
        render.out.print(
            f"strangers named: {m['strangers_named']} of {m['strangers']} ({m['strangers_named_share']:.3f}), "
            f"by {m['stranger_regions']} named region(s), counted as false regions",
            highlight=False,
        )


def _labelled_items(source: Path, where: str | None, option: str) -> list[tuple[str, str]]:
    """``(file, label)`` of an index folder's items, or of a dataset's records filtered by ``where``."""
    from visrec.segment import synth

    if (source / "manifest.json").is_file():
        from visrec.index import Index

        if where:
            raise BadInput(f"{option} filters datasets; an index holds what it was built from")
        return synth.index_items(Index(source))
    from visrec.ops import open_dataset

    return synth.dataset_items(open_dataset(source, where=where))


def _backgrounds(folder: Path | None) -> list[Any]:
    from visrec.data.images import is_image_file, load_image

    if folder is None:
        return []
    files = sorted(p for p in folder.rglob("*") if is_image_file(p))
    if not files:
        raise BadInput(f"{folder}: no image file found to crop backgrounds from")
    return [load_image(p) for p in files]


STRANGERS = typer.Option(
    None,
    "--strangers",
    help="Index folder or labelled dataset of things the recognising index does NOT hold (another data set, or "
    "classes left out of the index): some pasted objects come from it, written under 'strangers' in "
    "annotations.json, never as objects to find; a region named on one is a false region.",
)
STRANGER_SHARE = typer.Option(
    None, "--stranger-share", help="Probability that a pasted object is a stranger (default 0.3 with --strangers)."
)
STYLES = typer.Option(
    0.0,
    "--styles",
    help="Probability that a pasted picture is redrawn in another style (greyscale, edge sketch, posterised, "
    "cartoon, blur or strong colour jitter, one at random; recorded per object as 'style').",
)


@_command
def scene_gen_cmd(
    source: Path = typer.Argument(..., help="Index folder or labelled dataset whose (training) images are pasted."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write images/ and annotations.json into."),
    n: int = typer.Option(50, "--n", min=1, help="Number of scenes."),
    crowded: bool = typer.Option(False, "--crowded", help="10-18 objects of 40-100 px on 640x480 scenes."),
    backgrounds: Path = typer.Option(
        None, "--backgrounds", help="Folder of photos to crop backgrounds from (default: generated textures)."
    ),
    where: str = typer.Option(None, "--where", help="Dataset filter, e.g. 'split == \"train\"' (datasets only)."),
    shape: str = typer.Option("rect", "--shape", help="rect: paste whole images | ellipse: their inscribed ellipse."),
    strangers: Path = STRANGERS,
    strangers_where: str = typer.Option(
        None, "--strangers-where", help="Filter of the --strangers dataset, e.g. 'label in [\"Sakura\"]'."
    ),
    stranger_share: float = STRANGER_SHARE,
    styles: float = STYLES,
    seed: int = typer.Option(0, "--seed", help="Scenes are a function of the seed."),
) -> None:
    """Generate scenes for tuning: SOURCE's labelled images pasted on backgrounds, with COCO boxes and masks;
    with --strangers and --styles, scenes that also hold things the index does not know and pictures drawn in
    other styles (see docs/scene.md, "Realistic tuning scenes")."""
    from dataclasses import replace

    from visrec.segment import synth

    if strangers is None and (stranger_share is not None or strangers_where):
        raise BadInput("--stranger-share and --strangers-where need --strangers SOURCE")
    share = (0.3 if stranger_share is None else stranger_share) if strangers is not None else 0.0
    base = synth.CROWDED if crowded else synth.SynthConfig()
    cfg = replace(base, shape=shape, seed=seed, stranger_share=share, styles=styles)
    items = _labelled_items(source, where, "--where")
    others = _labelled_items(strangers, strangers_where, "--strangers-where") if strangers is not None else []
    coco = synth.generate(items, out, n, cfg, _backgrounds(backgrounds), others)
    extra = f", {len(coco['strangers'])} strangers" if others else ""
    render.out.print(
        f"{out}: {n} scenes, {len(coco['annotations'])} objects of {len(coco['categories'])} labels "
        f"(from {len(items)} images){extra}; evaluate with: visrec scene-eval INDEX {out}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``scene``, ``scene-eval`` and ``scene-gen`` to the main CLI app."""
    app.command("scene")(scene_cmd)
    app.command("scene-eval")(scene_eval_cmd)
    app.command("scene-gen")(scene_gen_cmd)


app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None, help="visrec scene analysis commands."
)
register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
