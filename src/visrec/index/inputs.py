"""What an index takes in: datasets (filtered), the encoder to index them with, and query files to encode.

Shared by the write path (:mod:`visrec.index.writer` callers), evaluation and training, below the CLI operations.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visrec.encoders.base import Encoder
from visrec.errors import BadInput, EmptyDataset
from visrec.index.pipeline import IndexingReport, record_metadata
from visrec.types import Embeddings, LabeledSet

if TYPE_CHECKING:
    from visrec.index.reader import Index
    from visrec.stores.filters import Filter

log = logging.getLogger(__name__)


NOT_UTF8 = "name-not-utf8"
"""The skip reason of a file whose path is not UTF-8 where the store holds only UTF-8 (Milvus)."""


def utf8_only(ds: LabeledSet, report: IndexingReport) -> LabeledSet:
    """``ds`` without the records whose id, path or labels hold undecodable file-name bytes (surrogate escapes),
    each reported as skipped (:data:`NOT_UTF8`) with a warning naming the fix: Milvus stores UTF-8 text only."""
    bad = [r for r in ds.records if not _utf8(r.id, r.path, *r.labels)]
    if not bad:
        return ds
    report.skipped.setdefault(NOT_UTF8, []).extend(r.path for r in bad)
    log.warning(
        "%d file(s) skipped: their names are not UTF-8, which a Milvus store cannot hold (first: %r); rename them "
        "(convmv -f latin1 -t utf8 -r --notest DIR) or index into a local store (--store faiss)",
        len(bad),
        bad[0].path,
    )
    return ds.subset([r for r in ds.records if _utf8(r.id, r.path, *r.labels)])


def _utf8(*texts: str) -> bool:
    try:
        for t in texts:
            t.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def filter_dataset(ds: LabeledSet, where: str | None) -> LabeledSet:
    """Records of ``ds`` matching the filter expression ``where`` (any field or manifest column)."""
    if not where:
        return ds
    from visrec.stores import parse_filter

    flt = parse_filter(where)
    metas = [record_metadata(r) for r in ds.records]
    kept = [r for r, m in zip(ds.records, metas, strict=True) if flt.matches(m)]
    if not kept:
        raise EmptyDataset(
            f"{ds.root}: no image matches --where {where!r} (of {len(ds)} images){unknown_fields(flt, metas)}"
        )
    return ds.subset(kept)


def unknown_fields(flt: Filter, metas: Sequence[dict[str, Any]]) -> str:
    """``"; no image has the field 'splt' (fields here: ...)"`` for filter fields no record carries, else ``""``."""
    from visrec.stores.filters import COLUMNS, LABEL_FIELDS

    present = {*LABEL_FIELDS, *(c for c in COLUMNS if any(m.get(c) is not None for m in metas))}
    present |= {k for m in metas for k in m["extra"]}
    missing = sorted(set(flt.fields) - present)
    if not missing:
        return ""
    names = ", ".join(repr(f) for f in missing)
    return f"; no image has the field {names} (fields here: {', '.join(sorted(present))})"


def open_dataset(path: Path, fmt: str | None = None, where: str | None = None) -> LabeledSet:
    """Load a dataset and apply a filter."""
    from visrec.data import load_dataset

    return filter_dataset(load_dataset(path, fmt), where)


def checkpoint_options(name: str | None, checkpoint: str | None) -> dict[str, Any]:
    """Encoder options for ``--checkpoint``: a model folder or cache id for ``hf-clip``; ``ARCH:FILE`` (e.g.
    ``ViT-B-32:/models/clip.pt``) for ``open-clip``."""
    if not checkpoint:
        return {}
    if name == "hf-clip":
        return {"model": checkpoint}
    if name == "open-clip":
        arch, sep, path = checkpoint.partition(":")
        if not sep or not arch or not path:
            raise BadInput(
                f"--checkpoint {checkpoint!r}: open-clip needs ARCH:FILE, e.g. --checkpoint ViT-B-32:/models/clip.pt"
            )
        return {"model": arch, "pretrained": path}
    raise BadInput(f"--checkpoint applies to --encoder hf-clip or open-clip, not {name or 'the default encoder'!r}")


def resolve_encoder(out: Path, name: str | None, checkpoint: str | None) -> Encoder:
    """The encoder to index with: the named one, else the one the existing index recorded, else the default."""
    from visrec.encoders import DEFAULT_ENCODER, create_encoder, encoder_from_info
    from visrec.index.folder import IndexFolder

    opts = checkpoint_options(name, checkpoint)
    if name is None and IndexFolder.is_index(out):
        return encoder_from_info(IndexFolder.open(out).manifest.encoder.get("describe", {}))
    return create_encoder(name or DEFAULT_ENCODER, **opts)


def encode_files(idx: Index, files: Sequence[Path]) -> tuple[Embeddings, list[int], list[tuple[str, str]]]:
    """Encode readable files with the index's encoder: (Embeddings, kept positions, skipped (path, reason))."""
    from visrec.data.images import load_readable

    arrays, kept, bad = load_readable(list(files), draft_size=idx.encoder.input_size)
    if not arrays:
        if len(files) == 1:
            raise EmptyDataset(str(bad[0]))
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise EmptyDataset(f"none of the {len(files)} images could be used: " + "; ".join(map(str, bad[:3])) + more)
    skipped = [(b.path, b.reason) for b in bad]
    return idx.encoder.encode_images(arrays, ids=[str(files[i]) for i in kept]), kept, skipped
