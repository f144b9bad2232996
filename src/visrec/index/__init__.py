"""The index: a versioned folder of vectors + metadata that images are added to and recognised against.

Write path: :mod:`~visrec.index.inputs` (datasets and encoders in) -> :mod:`~visrec.index.pipeline` (scan for
changes, decode, embed, resumable shards) -> :mod:`~visrec.index.writer` (``build_index``, ``save_calibration``:
one atomic commit per change) and :mod:`~visrec.index.edit` (single items, uploads).

Read path: :mod:`~visrec.index.reader` (``Index``: open, search, classify; follows commits) ->
:mod:`~visrec.index.snapshot` (one generation, pinned by a reader lease of :mod:`~visrec.index.leases`) ->
:mod:`~visrec.index.recognize` (the classifiers set up from an opened index).

On disk: :mod:`~visrec.index.folder` (``IndexFolder``: generations, the write lock, crash-safe commits) and
:mod:`~visrec.index.manifest` (the versioned ``manifest.json``). Vectors live in :mod:`visrec.stores` backends.
"""

from __future__ import annotations

from visrec.index.folder import IndexFolder, Manifest
from visrec.index.pipeline import IndexConfig, IndexingReport
from visrec.index.reader import Index, TextSearchResult
from visrec.index.recognize import MODES

__all__ = ["MODES", "Index", "IndexConfig", "IndexFolder", "IndexingReport", "Manifest", "TextSearchResult"]
