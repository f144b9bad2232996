"""``sam``: automatic masks from a Segment-Anything checkpoint the user already has.

No SAM-family weights can be installed from a package registry, so this backend loads the user's own file
(``SamConfig(checkpoint="sam_vit_b_01ec64.pth")`` or a ``.safetensors`` of the same state dict; ``.pth`` files
are read with ``torch.load(weights_only=True)``, never unpickled). The architecture comes from the
``segment-anything`` package (``pip install 'visrec[sam]'``); only its ``modeling`` subpackage is imported,
since the package's top level needs torchvision, which does not load beside the CPU torch here.

Automatic mask generation, as in SAM's own generator: a regular grid of ``points_per_side``^2 point prompts,
each decoded into 3 candidate masks with their predicted IoU (the image is embedded once, in ``set_image``);
candidates are kept when their predicted IoU and their *stability* (IoU of the mask thresholded at
``+offset`` and ``-offset`` logits) pass the thresholds, then pruned by NMS on their boxes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from visrec.errors import BadInput, MissingExtra, MissingWeights
from visrec.segment.base import ImageHolder
from visrec.segment.masks import masks_to_boxes, nms
from visrec.segment.types import Regions


@dataclass(frozen=True)
class SamArch:
    """The shape of a SAM model (the ViT image encoder, the prompt embedding and the mask decoder)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden: int = 256
    mask_in_chans: int = 16


ARCHS = {
    "vit_b": SamArch(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArch(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArch(1280, 32, 16, (7, 15, 23, 31)),
}


@dataclass(frozen=True)
class SamConfig:
    """``checkpoint``: path of the user's SAM weights; ``arch``: ``vit_b`` | ``vit_l`` | ``vit_h`` or a
    :class:`SamArch`; ``points_per_side``: prompt grid; ``points_per_batch``: prompts decoded at once;
    ``pred_iou_thresh`` / ``stability_thresh`` / ``stability_offset``: the filters; ``nms_iou``: box NMS;
    ``max_regions``: cap."""

    checkpoint: str | None = None
    arch: str | SamArch = "vit_b"
    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    stability_offset: float = 1.0
    nms_iou: float = 0.7
    max_regions: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.arch, str) and self.arch not in ARCHS:
            raise BadInput(f"unknown SAM arch {self.arch!r}; expected one of {', '.join(ARCHS)} or a SamArch")
        if self.points_per_side < 1 or self.points_per_batch < 1 or self.max_regions < 1:
            raise BadInput("points_per_side, points_per_batch and max_regions must be >= 1")

    def architecture(self) -> SamArch:
        return ARCHS[self.arch] if isinstance(self.arch, str) else self.arch


def point_grid(n: int) -> np.ndarray:
    """``(n * n, 2)`` float64 ``(x, y)`` points in [0, 1], the centres of an ``n x n`` grid of cells."""
    c = (np.arange(n) + 0.5) / n
    return np.stack(np.meshgrid(c, c), -1).reshape(-1, 2)


def stability_scores(logits: np.ndarray, threshold: float = 0.0, offset: float = 1.0) -> np.ndarray:
    """``(n,)`` IoU between each mask of ``logits (n, h, w)`` thresholded at ``threshold + offset`` and at
    ``threshold - offset`` (1.0: the mask does not move when the threshold does; 0 for an empty mask)."""
    flat = logits.reshape(len(logits), -1)
    inter = (flat > threshold + offset).sum(1)
    union = (flat > threshold - offset).sum(1)
    return np.divide(inter, union, out=np.zeros(len(flat)), where=union > 0)


class CandidateFilters(Protocol):
    """The thresholds :func:`passing` reads (``SamConfig`` and ``MobileSamConfig`` have them)."""

    @property
    def pred_iou_thresh(self) -> float: ...
    @property
    def stability_thresh(self) -> float: ...
    @property
    def stability_offset(self) -> float: ...
    @property
    def nms_iou(self) -> float: ...


class MaskFilters(CandidateFilters, Protocol):
    """The filter settings :func:`select_masks` reads: the thresholds and the cap."""

    @property
    def max_regions(self) -> int: ...


def passing(iou: np.ndarray, stability: np.ndarray, boxes: np.ndarray, cfg: CandidateFilters) -> np.ndarray:
    """Rows of candidates (``iou (n,)``, ``stability (n,)``, ``boxes (n, 4)`` xyxy, ``[0, 0, 0, 0]`` for an
    empty mask as :func:`~visrec.segment.masks.masks_to_boxes` gives) that pass the predicted-IoU and stability
    filters, are not empty and survive box NMS among themselves, best predicted IoU first."""
    full = (boxes[:, 2:] > boxes[:, :2]).all(1)
    ok = np.nonzero((iou >= cfg.pred_iou_thresh) & (stability >= cfg.stability_thresh) & full)[0]
    if len(ok) == 0:
        return ok
    return ok[nms(boxes[ok], iou[ok], cfg.nms_iou)]


def select_masks(logits: np.ndarray, iou_pred: np.ndarray, cfg: MaskFilters) -> np.ndarray:
    """Indices of the candidate masks (``logits (n, h, w)``) that pass both filters, are not empty and survive
    box NMS, best predicted IoU first (at most ``cfg.max_regions``)."""
    stable = stability_scores(logits, 0.0, cfg.stability_offset)
    return passing(iou_pred, stable, masks_to_boxes(logits > 0), cfg)[: cfg.max_regions]


def sam_modeling() -> Any:
    """``segment_anything.modeling`` without running the package's ``__init__`` (which imports torchvision)."""
    if "segment_anything.modeling" in sys.modules:
        return sys.modules["segment_anything.modeling"]
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra("segment-anything", "sam", "The sam segmenter")
    if "segment_anything" not in sys.modules:
        parent = types.ModuleType("segment_anything")
        parent.__path__ = list(spec.submodule_search_locations)
        parent.__spec__ = spec  # keeps importlib.util.find_spec("segment_anything") working afterwards
        sys.modules["segment_anything"] = parent
    return importlib.import_module("segment_anything.modeling")


def build_sam(arch: SamArch) -> Any:
    """A randomly initialised SAM torch module of ``arch`` (eval mode)."""
    import torch

    m = sam_modeling()
    grid = arch.img_size // arch.patch_size
    encoder = m.ImageEncoderViT(
        depth=arch.depth,
        embed_dim=arch.embed_dim,
        img_size=arch.img_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=arch.num_heads,
        patch_size=arch.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=arch.global_attn_indexes,
        window_size=arch.window_size,
        out_chans=arch.prompt_dim,
    )
    prompt = m.PromptEncoder(
        embed_dim=arch.prompt_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(arch.img_size, arch.img_size),
        mask_in_chans=arch.mask_in_chans,
    )
    transformer = m.TwoWayTransformer(
        depth=arch.decoder_depth,
        embedding_dim=arch.prompt_dim,
        mlp_dim=arch.decoder_mlp_dim,
        num_heads=arch.decoder_heads,
    )
    decoder = m.MaskDecoder(
        num_multimask_outputs=3,
        transformer=transformer,
        transformer_dim=arch.prompt_dim,
        iou_head_hidden_dim=arch.iou_hidden,
    )
    return m.Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()


def load_checkpoint(model: Any, path: Path) -> None:
    """Load a SAM state dict from ``.safetensors`` or ``.pth`` (``weights_only``) into ``model``, strictly."""
    import torch

    if not path.is_file():
        raise MissingWeights(f"SAM checkpoint {path} not found; pass the path of your sam_vit_*.pth or .safetensors")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise BadInput(f"{path}: not a SAM state dict of this architecture (check arch=): {str(e)[:300]}") from e


class SamSegmenter(ImageHolder):
    """See the module docstring. ``model``: an already built SAM module (tests), else ``config.checkpoint``."""

    name = "sam"

    def __init__(self, config: SamConfig | None = None, model: Any = None, **options: Any) -> None:
        self.config = config or SamConfig(**options)
        if model is None:
            if not self.config.checkpoint:
                raise MissingWeights(
                    "the sam segmenter needs your SAM checkpoint: pass checkpoint=/path/to/sam_vit_b_01ec64.pth "
                    "(no SAM weights can be installed from a package registry)"
                )
            model = build_sam(self.config.architecture())
            load_checkpoint(model, Path(self.config.checkpoint))
        self.model = model
        self._regions: Regions | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Embed an RGB ``uint8`` ``(h, w, 3)`` image once and decode every grid prompt into masks (an image
        smaller than 8 px on a side gives none)."""
        import torch

        self._image = image
        h, w = image.shape[:2]
        if min(h, w) < 8:  # as for the other backends: nothing to segment in a few pixels
            self._regions = Regions.empty(h, w, with_masks=True)
            return
        size = self.model.image_encoder.img_size
        f = size / max(h, w)
        rh, rw = max(1, round(h * f)), max(1, round(w * f))
        x = np.asarray(Image.fromarray(image).resize((rw, rh), Image.Resampling.BILINEAR), np.float32)
        with torch.no_grad():
            t = self.model.preprocess(torch.from_numpy(x).permute(2, 0, 1)[None])
            emb = self.model.image_encoder(t)
            logits, ious = self._decode(emb, point_grid(self.config.points_per_side) * [rw, rh], (rh, rw), (h, w))
        keep = select_masks(logits, ious, self.config)
        masks = logits[keep] > 0
        self._regions = Regions(masks_to_boxes(masks), ious[keep].astype(np.float32), masks)

    def _decode(
        self, emb: Any, points: np.ndarray, input_hw: tuple[int, int], out_hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mask logits ``(3p, h, w)`` at the image's size and predicted IoUs ``(3p,)`` for ``points (p, 2)``."""
        import torch

        pe = self.model.prompt_encoder.get_dense_pe()
        all_logits, all_ious = [], []
        for s in range(0, len(points), self.config.points_per_batch):
            pts = torch.as_tensor(points[s : s + self.config.points_per_batch], dtype=torch.float32)[:, None]
            sparse, dense = self.model.prompt_encoder(points=(pts, torch.ones(len(pts), 1)), boxes=None, masks=None)
            low, iou = self.model.mask_decoder(emb, pe, sparse, dense, multimask_output=True)
            up = self.model.postprocess_masks(low, input_hw, out_hw)
            all_logits.append(up.flatten(0, 1).numpy())
            all_ious.append(iou.flatten().numpy())
        return np.concatenate(all_logits), np.concatenate(all_ious)

    def regions(self) -> Regions:
        """The kept masks with their boxes; ``scores`` are the predicted IoUs."""
        image = self._require_image()
        h, w = int(image.shape[0]), int(image.shape[1])
        return self._regions if self._regions is not None else Regions.empty(h, w, with_masks=True)
