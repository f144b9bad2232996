"""Scale-out CLI commands (``visrec export``, ``visrec import``, ``visrec embed``, ``visrec compact``) and shared
options.

Registered on the main app with one call, ``cli_scale.register(app, wrap=_command)``, where ``wrap`` turns
library errors into a message and exit code. The options ``STORE``, ``ENGINE`` and ``RAY_ADDRESS`` are shared
with ``visrec index`` (``--store milvus://host:19530/coll --engine ray --ray-address ray://head:10001``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

STORE = typer.Option(
    "faiss", "--store",
    help="Vector store: faiss | exact | milvus (a private Milvus Lite file), or a Milvus URI: "
    "milvus://host:19530/collection (milvuss:// for TLS; token in VISREC_MILVUS_TOKEN) or milvus-lite:///path.db.",
)  # fmt: skip
ENGINE = typer.Option("local", "--engine", help="Where images are embedded: local (threads here) | ray (Ray Data).")
RAY_ADDRESS = typer.Option(
    None, "--ray-address", help="With --engine ray: a Ray cluster (ray://head:10001, host:6379 or auto); "
    "default: a local Ray for this run, on 127.0.0.1 only.",
)  # fmt: skip


def _echo(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data) if as_json else text)


def export_cmd(
    index: Path = typer.Argument(..., help="Index folder to export (any store backend)."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write (a joint store goes beside it)."),
    batch_size: int = typer.Option(10_000, "--batch-size", min=1, help="Rows per Parquet row group."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Export an index (vectors, metadata, encoder, calibration) to Parquet."""
    from visrec.distributed.transfer import export_index

    n = export_index(index, out, batch_size=batch_size)
    _echo(as_json, {"index": str(index), "out": str(out), "count": n}, f"exported {n} items to {out}")


def import_cmd(
    src: Path = typer.Argument(..., help="Parquet file written by visrec export."),
    out: Path = typer.Option(..., "--out", "-o", help="New index folder to create."),
    store: str = STORE,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Create an index from an exported Parquet file, with any store backend (e.g. FAISS -> Milvus)."""
    from visrec.distributed.transfer import import_index
    from visrec.stores.milvus_store import parse_store_spec

    backend, options = parse_store_spec(store)
    n = import_index(src, out, backend, **options)
    _echo(as_json, {"src": str(src), "out": str(out), "store": store, "count": n}, f"imported {n} items into {out}")


def embed_cmd(
    dataset: Path = typer.Argument(..., help="Folder per label, unlabeled folder, Roboflow export or manifest CSV."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the Parquet files (id, vector, error)."),
    encoder: str = typer.Option("efficientnet-lite0", "--encoder", help="Encoder name."),
    address: str = RAY_ADDRESS,
    actors: int = typer.Option(None, "--actors", min=1, help="Encoder actors (default: CPUs - 1)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Embed a dataset on Ray and write the vectors as Parquet from the workers."""
    from visrec.data import load_dataset
    from visrec.distributed import RayConfig, embed_to_parquet

    cfg = RayConfig(num_actors=actors, batch_size=batch_size)
    written = embed_to_parquet(load_dataset(dataset), encoder, out, address=address, config=cfg)
    _echo(as_json, {"dataset": str(dataset), "out": str(written)}, f"wrote vectors to {written}")


def compact_cmd(
    index: Path = typer.Argument(..., help="Index folder whose segments to merge."),
    policy: bool = typer.Option(
        False, "--policy", help="Merge only what the tiered merge policy asks for (as every update does), not all."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Merge an index's segments into one (dropping deleted rows) in a new generation; readers are not disturbed."""
    from visrec.index.edit import compact_index

    res = compact_index(index, full=not policy)
    text = f"{index}: {res['segments_before']} segment(s) -> {res['segments']}, {res['count']} items"
    _echo(as_json, res, text)


def register(app: typer.Typer, wrap: Callable[[Any], Any] = lambda f: f) -> None:
    """Add ``export``, ``import``, ``embed`` and ``compact`` to ``app``; ``wrap`` decorates each command function."""
    app.command("export")(wrap(export_cmd))
    app.command("import")(wrap(import_cmd))
    app.command("embed")(wrap(embed_cmd))
    app.command("compact")(wrap(compact_cmd))
