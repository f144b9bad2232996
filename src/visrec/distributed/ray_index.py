"""The embed stage of :func:`visrec.index.writer.build_index` on Ray Data (``visrec index --engine ray``).

Same contract as :func:`visrec.index.pipeline.embed_items`: the images to (re-)embed go through the Ray pipeline of
:mod:`visrec.distributed.ray_engine` (decoding at the encoder's input size, a pool of encoder actors); the
vectors come back to this process and are written to the index's resumable shards as they arrive, with the
metadata the single-process path records (perceptual hash of the decoded pixels, displayed size). Unreadable
files are reported in the :class:`~visrec.index.pipeline.IndexingReport` under their reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.distributed.ray_engine import RayConfig, build_pipeline, ray_session
from visrec.errors import BadImage
from visrec.types import Embeddings

if TYPE_CHECKING:
    from visrec.encoders.base import Encoder
    from visrec.index.pipeline import IndexConfig, IndexingReport, Progress, ShardWriter, _Item


class _Shards:
    """Rows gathered from the Ray batches, written to a shard every ``size`` rows."""

    def __init__(self, shards: ShardWriter, encoder: Encoder, size: int) -> None:
        self.shards, self.encoder, self.size = shards, encoder, size
        self.ids: list[str] = []
        self.vecs: list[np.ndarray] = []
        self.joint: list[np.ndarray] = []
        self.metas: list[dict[str, Any]] = []

    def add(self, item_id: str, vec: np.ndarray, joint: np.ndarray | None, meta: dict[str, Any]) -> None:
        self.ids.append(item_id)
        self.vecs.append(vec)
        self.metas.append(meta)
        if joint is not None:
            self.joint.append(joint)
        if len(self.ids) >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.ids:
            return
        joint = np.stack(self.joint).astype(np.float32) if self.joint else None
        emb = Embeddings(np.stack(self.vecs).astype(np.float32), tuple(self.ids), self.encoder.fingerprint, joint)
        self.shards.write(emb, self.metas)
        self.ids, self.vecs, self.joint, self.metas = [], [], [], []


def embed_items_with_ray(
    items: Sequence[_Item],
    encoder: Encoder,
    shards: ShardWriter,
    config: IndexConfig,
    report: IndexingReport,
    progress: Progress | None = None,
) -> None:
    """Embed ``items`` on Ray (``config.ray_address``, or a local Ray on 127.0.0.1) into ``shards``."""
    if not items:
        return
    by_id = {it.record.id: it for it in items}
    rows = [{"id": i, "path": str(it.abspath.resolve()), "need_size": not it.meta["width"]} for i, it in by_id.items()]
    out = _Shards(shards, encoder, config.shard_size)
    done = 0
    with ray_session(config.ray_address) as ray:
        ray.data.DataContext.get_current().enable_progress_bars = False  # the caller draws its own
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # it only says they are off
        ds = build_pipeline(ray, rows, encoder.describe(), RayConfig(batch_size=config.batch_size),
                            max_pixels=config.max_pixels, facts=True)  # fmt: skip
        for batch in ds.iter_batches(batch_format="numpy"):
            for j, raw_id in enumerate(batch["id"]):
                it = by_id[str(raw_id)]
                if batch["reason"][j]:  # the report counts paths per reason, as the single-process path does
                    report.skip(BadImage(str(it.abspath), str(batch["reason"][j])))
                    continue
                meta = dict(it.meta, extra=dict(it.meta["extra"]))
                if not meta["width"]:
                    meta["width"], meta["height"] = int(batch["width"][j]), int(batch["height"][j])
                meta["extra"]["phash"] = str(batch["phash"][j])
                out.add(it.record.id, batch["vector"][j], batch["joint"][j] if "joint" in batch else None, meta)
            done += len(batch["id"])
            if progress is not None:
                progress("embed", done, len(items))
    out.flush()
