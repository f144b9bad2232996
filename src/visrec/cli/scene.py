"""``visrec scene`` and ``visrec scene-eval``: recognise every region of a scene against an index.

Register on the main app with one line: ``visrec.cli.scene.register(app)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from visrec import render
from visrec.cli.common import command, print_json

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
    "relative",
    "--accept",
    help="relative: keep regions scoring near the scene's best (and >= --floor) | calibrated: the index's "
    "per-class unknown thresholds (strict; fitted on whole images, not crops).",
)
MARGIN = typer.Option(0.02, "--margin", help="relative: keep regions within this raw score of the scene's best.")
FLOOR = typer.Option(0.76, "--floor", help="relative: the lowest raw score that names a region.")


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
    as_json: bool = JSON,
) -> None:
    """Image-level presence precision / recall / F1 of the index's labels over labelled scenes."""
    from visrec.segment.evaluate import evaluate_presence, load_labels

    cfg = _config(long_side=long_side, mode=mode, min_score=min_score, accept=accept, margin=margin, floor=floor)
    analyzer = _analyzer(index, segmenter, cfg)
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


def register(app: typer.Typer) -> None:
    """Add ``scene`` and ``scene-eval`` to the main CLI app."""
    app.command("scene")(scene_cmd)
    app.command("scene-eval")(scene_eval_cmd)


app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None, help="visrec scene analysis commands."
)
register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
