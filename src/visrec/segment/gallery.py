"""``gallery``: windows scored by how much they look like the index's own examples.

The index's images are what the user wants found (the Naruto index is made of face crops, so windows that look
like an indexed face are the regions wanted). Candidate windows come from :mod:`visrec.segment.proposals`
(all of them, unpruned), are embedded in batches with the index's encoder, and each is scored by its cosine
similarity to its nearest indexed image. Windows below ``min_similarity`` are dropped, the rest pruned by NMS.
The embeddings of the kept windows are cached, so recognition does not encode them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.segment.base import ImageHolder
from visrec.segment.masks import crop, nms
from visrec.segment.proposals import ProposalConfig, ProposalSegmenter
from visrec.segment.types import Regions
from visrec.types import Embeddings


@dataclass(frozen=True)
class GalleryConfig:
    """``proposals``: where candidate windows come from; ``min_similarity``: cosine floor to the nearest
    indexed image; ``nms_iou``: pruning IoU; ``max_regions``: cap; ``batch_size``: encoder batch."""

    proposals: ProposalConfig = field(
        default_factory=lambda: ProposalConfig(
            scales=(0.25, 0.4, 0.6), components=False, nms_iou=1.0, max_regions=10_000
        )
    )
    min_similarity: float = 0.0
    nms_iou: float = 0.3
    max_regions: int = 20
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_similarity <= 1.0 or self.max_regions < 1 or self.batch_size < 1:
            raise BadInput(
                "min_similarity must be in [-1, 1], max_regions and batch_size >= 1; got "
                f"{self.min_similarity}, {self.max_regions}, {self.batch_size}"
            )


class GallerySegmenter(ImageHolder):
    """See the module docstring. ``index``: a :class:`visrec.index.Index` (its encoder and store are used)."""

    name = "gallery"

    def __init__(self, index: Any = None, config: GalleryConfig | None = None, **options: Any) -> None:
        if index is None:
            raise BadInput("the gallery segmenter needs the index to compare windows with: pass index=Index(path)")
        self.index = index
        self.config = config or GalleryConfig(**options)
        self._proposals = ProposalSegmenter(self.config.proposals)
        self._regions: Regions | None = None
        self._emb: Embeddings | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Embed and score every candidate window of an RGB ``uint8`` ``(h, w, 3)`` image (the slow part)."""
        self._image = image
        self._proposals.set_image(image)
        cand = self._proposals.regions()
        if len(cand) == 0:
            self._regions, self._emb = cand, None
            return
        enc = self.index.encoder
        crops = [crop(image, b, min_side=2) for b in cand.xyxy]
        emb = enc.encode_images(crops, batch_size=self.config.batch_size)
        sims = self.index.store.search(emb.vectors, 1).scores[:, 0].astype(np.float32)
        sims = np.where(np.isfinite(sims), sims, np.float32(-1.0))
        ok = np.nonzero(sims >= self.config.min_similarity)[0]
        keep = ok[nms(cand.xyxy[ok], sims[ok], self.config.nms_iou)][: self.config.max_regions]
        self._regions = Regions(cand.xyxy[keep], sims[keep], None)
        self._emb = emb.take(keep)

    def regions(self) -> Regions:
        """The kept windows, most gallery-like first; ``scores`` are cosine similarities to the nearest image."""
        self._require_image()
        return self._regions if self._regions is not None else Regions.empty()

    def cached_embeddings(self) -> Embeddings | None:
        self._require_image()
        return self._emb
