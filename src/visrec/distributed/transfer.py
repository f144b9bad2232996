"""Move vectors between stores and index folders through Parquet (any backend to any backend).

A visrec Parquet file has one row per item: ``id`` (string), ``vector`` (fixed-size list of float32),
``path``, ``labels`` (list of strings), ``split``, ``sha256``, ``width``, ``height``, ``group`` and ``extra``
(a JSON object as text). Its key-value metadata ``visrec`` holds a JSON object: ``format``, ``dim`` and, for
an exported index, the manifest's ``encoder``/``joint_dim``/``store`` and the generation's JSON files
(calibration, label texts...), so that :func:`import_index` rebuilds an equivalent index folder. The
joint-space store of a CLIP-like index goes to a sibling file ``<name>.joint.parquet``.

Files are written and read in batches, so memory stays bounded by ``batch_size`` rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput, IndexCorrupt, MissingExtra
from visrec.stores.base import VectorStore

PARQUET_FORMAT = 1
Batch = tuple[list[str], np.ndarray, list[dict[str, Any]]]


def _pa() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet
    except ImportError as e:
        raise MissingExtra("pyarrow", "milvus", "Parquet export and import") from e
    return pa


def _schema(pa: Any, dim: int, info: Mapping[str, Any]) -> Any:
    fields = [
        ("id", pa.string()), ("vector", pa.list_(pa.float32(), dim)), ("path", pa.string()),
        ("labels", pa.list_(pa.string())), ("split", pa.string()), ("sha256", pa.string()),
        ("width", pa.int64()), ("height", pa.int64()), ("group", pa.string()), ("extra", pa.string()),
    ]  # fmt: skip
    meta = {"format": PARQUET_FORMAT, "dim": dim, **info}
    return pa.schema(fields, metadata={b"visrec": json.dumps(meta).encode()})


def _table(pa: Any, schema: Any, batch: Batch) -> Any:
    ids, vecs, metas = batch
    flat = pa.array(np.ascontiguousarray(vecs, np.float32).ravel(), pa.float32())
    cols = {
        "id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1]),
        "path": [m["path"] for m in metas], "labels": [list(m["labels"]) for m in metas],
        "split": [m["split"] for m in metas], "sha256": [m["sha256"] for m in metas],
        "width": [m["width"] for m in metas], "height": [m["height"] for m in metas],
        "group": [m["group"] for m in metas], "extra": [json.dumps(m["extra"]) for m in metas],
    }  # fmt: skip
    return pa.table(cols, schema=schema)


def export_store(store: VectorStore, out: str | Path, *, info: Mapping[str, Any] | None = None,
                 batch_size: int = 10_000) -> int:  # fmt: skip
    """Write every item of ``store`` (insertion order) to the Parquet file ``out``; returns the row count."""
    pa = _pa()
    import pyarrow.parquet as pq

    schema = _schema(pa, store.dim, dict(info or {}))
    n = 0
    try:
        with pq.ParquetWriter(str(out), schema) as writer:
            for batch in store.export(batch_size):
                try:
                    table = _table(pa, schema, batch)
                except UnicodeEncodeError:
                    raise _not_utf8(batch, out) from None
                writer.write_table(table)
                n += len(batch[0])
    except BadInput:
        Path(out).unlink(missing_ok=True)
        raise
    return n


def _not_utf8(batch: Batch, out: str | Path) -> BadInput:
    """The refusal for a batch holding text Parquet cannot store: surrogate escapes of undecodable file names."""
    item = "?"
    for i, m in zip(batch[0], batch[2], strict=True):
        try:
            json.dumps([i, m], ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            item = i
            break
    return BadInput(
        f"cannot export to {out}: item {item!r} has a file or folder name that is not valid UTF-8, which Parquet "
        "cannot hold; rename it to valid UTF-8 (e.g. convmv -f latin1 -t utf8 -r --notest DIR), re-index, and export"
    )


def parquet_info(src: str | Path) -> dict[str, Any]:
    """The ``visrec`` metadata of a Parquet file (``format``, ``dim``, ...); ``BadInput`` if it has none."""
    _pa()
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(str(src)).metadata or {}).get(b"visrec")
    except (OSError, ValueError) as e:
        raise BadInput(f"{src} is not a readable Parquet file ({e})") from None
    if raw is None:
        raise BadInput(f"{src} was not written by visrec export (no 'visrec' metadata)")
    info = json.loads(raw)
    if info.get("format") != PARQUET_FORMAT:
        raise IndexCorrupt(f"{src}: unknown visrec Parquet format {info.get('format')!r}; upgrade visrec")
    return dict(info)


def iter_parquet(src: str | Path, batch_size: int = 10_000) -> Iterator[Batch]:
    """Batches of ``(ids, vectors (b, dim) float32, metadata)`` from a visrec Parquet file."""
    import pyarrow.parquet as pq

    dim = int(parquet_info(src)["dim"])
    for rb in pq.ParquetFile(str(src)).iter_batches(batch_size=batch_size):
        cols = rb.to_pydict()
        vecs = rb.column("vector").flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
        metas = [
            {"path": p, "labels": lab or [], "split": s, "sha256": h, "width": w, "height": ht, "group": g,
             "extra": json.loads(x or "{}")}
            for p, lab, s, h, w, ht, g, x in zip(cols["path"], cols["labels"], cols["split"], cols["sha256"],
                                                 cols["width"], cols["height"], cols["group"], cols["extra"],
                                                 strict=True)
        ]  # fmt: skip
        yield list(cols["id"]), vecs, metas


def import_store(src: str | Path, store: VectorStore, *, batch_size: int = 10_000) -> int:
    """Upsert every row of the Parquet file ``src`` into ``store``; returns the row count."""
    n = 0
    for ids, vecs, metas in iter_parquet(src, batch_size):
        store.upsert(ids, vecs, metas)
        n += len(ids)
    return n


def _joint_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".parquet") + ".joint.parquet")


def _new_store(backend: str, dim: int, part: str, options: Mapping[str, Any], encoder_id: str) -> VectorStore:
    """An empty store for the ``store`` or ``joint`` part; a Milvus collection at a URI must be new or empty."""
    from visrec.stores import create_store

    if backend != "milvus" or not options.get("uri"):
        return create_store(backend, dim, **options)
    from visrec.stores.milvus_store import MilvusStore, part_options, require_empty

    store = MilvusStore(dim, **part_options(part, {"encoder_id": encoder_id, **options}))
    require_empty(store, "visrec import")
    return store


def export_index(index: str | Path, out: str | Path, *, batch_size: int = 10_000) -> int:
    """Export the current generation of the index folder ``index`` to ``out`` (and its joint sibling)."""
    from visrec.index.folder import IndexFolder
    from visrec.stores import load_store

    folder = IndexFolder.open(index)
    gen, m = folder.generation_dir, folder.manifest
    if gen is None:
        raise BadInput(f"{index}: the index is empty; nothing to export")
    files = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(gen.glob("*.json"))}
    info = {"encoder": m.encoder, "joint_dim": m.joint_dim, "store": m.store, "files": files}
    out = Path(out)
    n = export_store(load_store(m.store, gen / "store"), out, info=info, batch_size=batch_size)
    if (gen / "joint").is_dir():
        export_store(load_store(m.store, gen / "joint"), _joint_path(out), info={}, batch_size=batch_size)
    return n


def import_index(src: str | Path, index: str | Path, backend: str = "faiss", **store_options: Any) -> int:
    """Create the index folder ``index`` (store ``backend``) from an :func:`export_index` file.

    ``store_options`` go to the store (e.g. ``uri=`` for milvus). Returns the number of items.
    """
    from visrec.index.folder import IndexFolder

    src, index = Path(src), Path(index)
    info = parquet_info(src)
    if "encoder" not in info:
        raise BadInput(f"{src} holds a store, not an index (no encoder recorded); use import_store")
    if index.exists() and (not index.is_dir() or any(index.iterdir())):
        raise BadInput(f"{index} exists and is not an empty folder; import into a new folder")
    stores = {"store": (src, int(info["dim"]))}
    if _joint_path(src).is_file():
        stores["joint"] = (_joint_path(src), int(parquet_info(_joint_path(src))["dim"]))
    filled: dict[str, VectorStore] = {}
    for name, (path, dim) in stores.items():
        filled[name] = _new_store(backend, dim, name, store_options, str(info["encoder"].get("fingerprint", "")))
        import_store(path, filled[name])
    folder = IndexFolder.create(index, encoder_info=info["encoder"], dim=int(info["dim"]),
                                joint_dim=info.get("joint_dim"), backend=backend)  # fmt: skip

    def write(gen: Path) -> None:
        for name, store in filled.items():
            (gen / name).mkdir()
            store.save(gen / name)
        for fname, content in info.get("files", {}).items():
            (gen / fname).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")

    folder.commit(write, count=filled["store"].count())
    return filled["store"].count()
