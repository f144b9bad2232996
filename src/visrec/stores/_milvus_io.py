"""The Milvus side of :mod:`visrec.stores.milvus_store`: URIs, schema, row conversion, paged reads, files.

Every read that names ids goes through a filter expression built with :func:`~visrec.stores.milvus_expr.literal`
(escaped), never through pymilvus' own id formatting. Reads are paged by ``seq`` windows (Milvus caps
``offset + limit`` at 16384), which also returns rows in insertion order.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from visrec.errors import BadInput, DimensionMismatch, ManifestMismatch
from visrec.stores._common import STORE_FORMAT
from visrec.stores.metadata import MetadataTable
from visrec.stores.milvus_expr import literal

if TYPE_CHECKING:
    from visrec.stores.milvus_store import MilvusStore

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
WRITE_BATCH = 2_000
READ_BATCH = 1_000
WINDOW = 16_384
QUERY_BATCH = 1_024
MAX_ID, MAX_TEXT, MAX_LABELS = 1_024, 4_096, 1_024
INDEXES = {"flat": "FLAT", "ivf": "IVF_FLAT", "hnsw": "HNSW"}
FIELDS = ["id", "seq", "vector", "labels", "path", "split", "sha256", "width", "height", "grp", "extra"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


@dataclass(frozen=True)
class Target:
    """Where a store lives: ``uri`` (as given; a Lite file made absolute), ``client_uri`` for ``MilvusClient``,
    the collection name, and whether it is a Milvus Lite file."""

    uri: str
    client_uri: str
    collection: str
    is_lite: bool


def parse_uri(uri: str, collection: str | None = None) -> Target:
    """Parse ``milvus://host:port/collection``, ``milvuss://...`` (TLS) or ``milvus-lite:///path.db#coll``."""
    parts = urlsplit(uri)
    if parts.scheme in ("milvus", "milvuss"):
        if not parts.hostname:
            raise BadInput(f"Milvus URI {uri!r} has no host; write milvus://host:19530/collection")
        scheme = "https" if parts.scheme == "milvuss" else "http"
        client_uri = f"{scheme}://{parts.hostname}:{parts.port or 19530}"
        name, lite = collection or parts.path.strip("/") or "visrec", False
    elif parts.scheme == "milvus-lite":
        path = parts.netloc + parts.path
        if not path.endswith(".db"):
            raise BadInput(f"Milvus Lite URI {uri!r} must name a .db file, e.g. milvus-lite:///data/gallery.db")
        file = Path(path).resolve()  # saved pointers must not depend on the working folder
        file.parent.mkdir(parents=True, exist_ok=True)
        client_uri, name, lite = str(file), collection or parts.fragment or "visrec", True
        uri = f"milvus-lite://{file}"
    else:
        raise BadInput(f"unknown Milvus URI {uri!r}; use milvus://host:19530/collection or milvus-lite:///x.db")
    if not _NAME.match(name):
        raise BadInput(f"Milvus collection name {name!r} must be letters, digits and _ (not first a digit)")
    return Target(uri, client_uri, name, lite)


def points_at(folder: Path | None, target: Target) -> bool:
    """Whether the store saved in ``folder`` (its ``milvus.json``) lives in ``target``'s collection."""
    pointer_file = None if folder is None else folder / "milvus.json"
    if pointer_file is None or not pointer_file.is_file():
        return False
    pointer = json.loads(pointer_file.read_text(encoding="utf-8"))
    if not pointer.get("uri"):
        return False
    saved = parse_uri(pointer["uri"], pointer.get("collection"))
    return (saved.client_uri, saved.collection) == (target.client_uri, target.collection)


def check_index(index: str) -> str:
    """``index`` if it is a known index kind, else ``BadInput`` listing them."""
    if index not in INDEXES:
        raise BadInput(f"unknown Milvus index {index!r}; choose one of {sorted(INDEXES)}")
    return index


def close_client(client: Any, tmp: tempfile.TemporaryDirectory[str] | None) -> None:
    """Close ``client`` and remove the private temporary folder, if any."""
    try:
        client.close()
    finally:
        if tmp is not None:
            tmp.cleanup()


def _schema(dim: int, description: str) -> Any:
    from pymilvus import DataType, MilvusClient

    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
    s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
    s.add_field("seq", DataType.INT64)
    s.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    s.add_field("labels", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_LABELS, max_length=MAX_ID)
    s.add_field("path", DataType.VARCHAR, max_length=MAX_TEXT)
    s.add_field("split", DataType.VARCHAR, max_length=MAX_ID, nullable=True)
    s.add_field("sha256", DataType.VARCHAR, max_length=128)
    s.add_field("width", DataType.INT64)
    s.add_field("height", DataType.INT64)
    s.add_field("grp", DataType.VARCHAR, max_length=MAX_ID, nullable=True)
    s.add_field("extra", DataType.JSON)
    return s


def ensure_collection(client: Any, name: str, dim: int, index: str, opts: dict[str, int], encoder_id: str) -> str:
    """Create the collection with its vector index, or check an existing one (fields, width, encoder); load it.

    Returns the index kind in use: ``index`` for a new collection, the existing one's otherwise (its index
    type decides the search parameters; an index kind visrec does not create is searched as ``flat`` is, with
    the server's defaults).
    """
    if client.has_collection(name):
        info = client.describe_collection(name)
        fields = {f["name"]: f for f in info["fields"]}
        if not set(FIELDS) <= set(fields):
            raise BadInput(
                f"Milvus collection {name!r} was not made by visrec (it lacks {sorted(set(FIELDS) - set(fields))}); "
                "name another collection"
            )
        width = fields["vector"].get("params", {}).get("dim")
        if width is None or int(width) != dim:
            raise DimensionMismatch(f"Milvus collection {name!r} holds width {width}, not {dim}: pick another")
        try:
            saved = json.loads(info.get("description") or "{}").get("encoder_id", "")
        except (ValueError, AttributeError):
            saved = ""
        if encoder_id and saved and saved != encoder_id:
            raise ManifestMismatch(f"collection {name!r} was built with encoder {saved!r}, not {encoder_id!r}")
        client.load_collection(name)
        return _index_kind(client, name, index)
    params = client.prepare_index_params()
    extra = {"ivf": {"nlist": opts["nlist"]}, "hnsw": {"M": opts["m"], "efConstruction": max(opts["ef"], 64)}}
    params.add_index("vector", index_type=INDEXES[index], metric_type="IP", params=extra.get(index, {}))
    desc = json.dumps({"visrec_schema": SCHEMA_VERSION, "encoder_id": encoder_id})
    client.create_collection(name, schema=_schema(dim, desc), consistency_level="Strong")
    # sync=True polls with a 0.5 s sleep; the index of an empty collection is ready at once
    client.create_index(name, params, sync=False)
    client.load_collection(name)
    return index


def _index_kind(client: Any, name: str, asked: str) -> str:
    """The visrec index kind of the collection's vector index (``flat`` for other types)."""
    kinds = {v: k for k, v in INDEXES.items()}
    for index_name in client.list_indexes(name):
        desc = client.describe_index(name, index_name)
        if desc.get("field_name") == "vector":
            kind = kinds.get(str(desc.get("index_type", "")).upper(), "flat")
            if kind != asked:
                log.info("collection %s has a %s index; searching it as %s", name, desc.get("index_type"), kind)
            return kind
    return "flat"


def count(client: Any, name: str, expr: str) -> int:
    """Rows matching ``expr`` (all rows for ``""``)."""
    res = client.query(name, filter=expr, output_fields=["count(*)"])
    return int(res[0]["count(*)"])


def next_seq(client: Any, name: str) -> int:
    """One past the largest stored ``seq`` (0 when empty): an exponential then a binary search on counts."""
    if count(client, name, "") == 0:
        return 0
    lo, hi = 0, 1
    while count(client, name, f"seq >= {hi}") > 0:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: some seq >= lo, none >= hi
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(client, name, f"seq >= {mid}") > 0 else (lo, mid)
    return hi


def _ids_expr(ids: list[str]) -> str:
    return f"id in [{', '.join(literal(i) for i in ids)}]"


def fetch_seqs(client: Any, name: str, ids: list[str]) -> dict[str, int]:
    """``seq`` of each stored id among ``ids``."""
    out: dict[str, int] = {}
    for start in range(0, len(ids), READ_BATCH):
        chunk = ids[start : start + READ_BATCH]
        for row in client.query(name, filter=_ids_expr(chunk), output_fields=["id", "seq"], limit=len(chunk)):
            out[row["id"]] = int(row["seq"])
    return out


def fetch_rows(client: Any, name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Full rows (all fields) of the stored ids among ``ids``, by id."""
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), READ_BATCH):
        chunk = ids[start : start + READ_BATCH]
        for row in client.query(name, filter=_ids_expr(chunk), output_fields=FIELDS, limit=len(chunk)):
            out[row["id"]] = row
    return out


def scan_ids(client: Any, name: str, expr: str, stop: int) -> Iterator[tuple[str, int]]:
    """``(id, seq)`` of rows matching ``expr`` in ``seq`` order, one window of :data:`WINDOW` seqs at a time."""
    for start in range(0, stop, WINDOW):
        window = f"seq >= {start} and seq < {start + WINDOW}"
        flt = window if not expr else f"({window}) and ({expr})"
        rows = client.query(name, filter=flt, output_fields=["id", "seq"], limit=WINDOW)
        yield from sorted(((r["id"], int(r["seq"])) for r in rows), key=lambda p: p[1])


def search(
    client: Any, name: str, q: np.ndarray, k: int, expr: str, params: dict[str, Any]
) -> list[list[tuple[str, float]]]:
    """Per query, ``(id, inner product)`` pairs best first (at most ``k``)."""
    out: list[list[tuple[str, float]]] = []
    for start in range(0, len(q), QUERY_BATCH):
        res = client.search(
            name, data=q[start : start + QUERY_BATCH].tolist(), limit=k, filter=expr, search_params=params,
            output_fields=["seq"],
        )  # fmt: skip
        out.extend([(str(h["id"]), float(h["distance"])) for h in hits] for hits in res)
    return out


def check_id_lengths(ids: list[str]) -> None:
    """``BadInput`` for an id longer than the collection allows, or not UTF-8 (from an undecodable file name)."""
    for i in ids:
        try:
            size = len(i.encode())
        except UnicodeEncodeError:
            raise BadInput(
                f"id {i!r} holds bytes of a file name that are not UTF-8, which Milvus cannot store; rename the file "
                "(convmv -f latin1 -t utf8 -r --notest DIR) or use a local store (faiss)"
            ) from None
        if size > MAX_ID:
            raise BadInput(f"id {i[:40]!r}... is longer than {MAX_ID} bytes, the Milvus limit for ids")


def meta_to_row(item: str, seq: int, vector: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    """One Milvus row from a normalised ``Metadata`` dict; ``BadInput`` when a field exceeds its limit."""
    if len(meta["path"].encode()) > MAX_TEXT or len(meta["labels"]) > MAX_LABELS:
        raise BadInput(f"{item!r}: path over {MAX_TEXT} bytes or over {MAX_LABELS} labels (Milvus limits)")
    return {"id": item, "seq": seq, "vector": vector.tolist(), "labels": meta["labels"], "path": meta["path"],
            "split": meta["split"], "sha256": meta["sha256"], "width": meta["width"], "height": meta["height"],
            "grp": meta["group"], "extra": meta["extra"]}  # fmt: skip


def row_to_meta(row: dict[str, Any]) -> dict[str, Any]:
    """The ``Metadata`` dict of one Milvus row."""
    return {"path": row["path"], "labels": list(row["labels"] or []), "split": row.get("split"),
            "sha256": row["sha256"], "width": int(row["width"]), "height": int(row["height"]),
            "group": row.get("grp"), "extra": dict(row.get("extra") or {})}  # fmt: skip


def save_portable(
    batches: Iterable[tuple[list[str], np.ndarray, list[dict[str, Any]]]],
    dim: int,
    folder: Path,
    backend: str,
    options: dict[str, Any],
) -> int:
    """Write ``vectors.npy``, ``metadata.sqlite`` and ``store.json`` (the files every backend reads)."""
    table = MetadataTable(":memory:")
    parts, n = [], 0
    for ids, vecs, metas in batches:
        table.insert(ids, range(n, n + len(ids)), metas)
        parts.append(vecs)
        n += len(ids)
    mat = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    np.save(folder / "vectors.npy", np.ascontiguousarray(mat, np.float32), allow_pickle=False)
    table.save(folder / "metadata.sqlite")
    table.close()
    info = {"format": STORE_FORMAT, "backend": backend, "dim": dim, "count": n, "options": options}
    (folder / "store.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return n


def load_store(cls: type[MilvusStore], folder: Path, *, mmap: bool, options: dict[str, Any]) -> MilvusStore:
    """See :meth:`MilvusStore.load`."""
    from visrec.stores._common import read_store_info
    from visrec.stores.exact import ExactStore

    info = read_store_info(folder)
    saved = dict(info.get("options") or {}) if info.get("backend") == cls.backend else {}
    pointer_file = folder / "milvus.json"
    pointer = json.loads(pointer_file.read_text(encoding="utf-8")) if pointer_file.is_file() else {}
    if pointer.get("uri") and "uri" not in options:
        store = cls(int(info["dim"]), uri=pointer["uri"], collection=pointer["collection"], **saved)
        if store.count() == pointer.get("count"):
            return store
        log.warning("collection %s changed since %s was saved; uploading the saved files", store.collection, folder)
        store.close()
    src = ExactStore.load(folder, mmap=mmap)
    store = cls(src.dim, **{**saved, **options})
    for ids, vecs, metas in src.export(WRITE_BATCH):
        store.add(ids, vecs, metas)
    return store
