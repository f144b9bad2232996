"""Scene analysis: segmenters (``set_image`` then ``regions``), pure mask helpers, recognition of regions.

Heavy parts import lazily; importing this package loads only numpy, PIL and scipy.ndimage.
"""

from __future__ import annotations

from visrec.segment.base import SEGMENTERS, Segmenter
from visrec.segment.types import Regions, SceneResult


def create_segmenter(name: str, **options: object) -> Segmenter:
    """Build a registered segmenter (``proposals``, ``gallery`` which needs ``index=``, or ``nanodet`` which needs
    its weights, see :mod:`visrec.segment.nanodet`)."""
    return SEGMENTERS.create(name, **options)


__all__ = ["SEGMENTERS", "Regions", "SceneResult", "Segmenter", "create_segmenter"]
