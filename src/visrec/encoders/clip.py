"""CLIP encoders from the user's own checkpoints: ``hf-clip`` (transformers) and ``open-clip`` (open_clip).

No CLIP weights ship in any package installable here, so these load what the user already has: a local
folder or a model id already in the Hugging Face cache (never downloaded: ``local_files_only=True``), or an
OpenCLIP checkpoint file. Both give full zero-shot / text search: ``Embeddings.joint`` is ``vectors`` (the
normalised image embeddings) and :meth:`encode_texts` returns normalised text embeddings in the same space.
Inference runs with torch (it is the user's model). Preprocessing -- resize the shortest side, centre crop,
normalise -- follows the checkpoint's own configuration and is done with PIL / numpy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visrec.encoders.base import ImageLike
from visrec.encoders.cache import fingerprint, weights_sha256
from visrec.encoders.common import check_batch_size, check_images, l2_normalize, progress_bar, resolve_ids
from visrec.errors import BadInput, MissingExtra
from visrec.types import Embeddings

_HASHED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model")
_PIL_FILTERS = {0: Image.Resampling.NEAREST, 1: Image.Resampling.LANCZOS, 2: Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class ClipPrep:
    """CLIP-style preprocessing: shortest side to ``resize`` px, centre crop ``crop`` (h, w), normalise."""

    resize: int
    crop: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = 3  # PIL code; 3 = bicubic, CLIP's default

    def to_dict(self) -> dict[str, Any]:
        """JSON form (part of the fingerprint)."""
        return {"resize": self.resize, "crop": list(self.crop), "mean": list(self.mean), "std": list(self.std),
                "resample": self.resample}  # fmt: skip

    def __call__(self, image: ImageLike) -> np.ndarray:
        """One image -> ``(3, h, w)`` float32 normalised RGB."""
        from visrec.data.images import to_rgb_array

        rgb = to_rgb_array(image, draft_size=self.resize)
        h, w = rgb.shape[:2]
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(self.resize * long / short)
        size = (self.resize, new_long) if h <= w else (new_long, self.resize)  # (h, w)
        filt = _PIL_FILTERS.get(self.resample, Image.Resampling.BICUBIC)
        im = Image.fromarray(rgb).resize((size[1], size[0]), filt)
        ch, cw = self.crop
        top, left = (size[0] - ch) // 2, (size[1] - cw) // 2
        arr = np.asarray(im.crop((left, top, left + cw, top + ch)), np.float32) / np.float32(255.0)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        normed: np.ndarray = (arr - mean) / std
        return np.ascontiguousarray(normed.transpose(2, 0, 1))


class _TorchClip:
    """Batching, ids and normalisation shared by the two CLIP backends; subclasses provide the model calls."""

    name: str
    dim: int
    joint_dim: int | None
    fingerprint: str
    input_size: int
    prep: ClipPrep
    batch_size: int = 32

    def _image_features(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode_images(
        self,
        images: Sequence[ImageLike],
        ids: Sequence[str] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Embeddings:
        """``(n, dim)`` float32 unit image embeddings in input order; ``joint`` is the same array."""
        check_images(images)
        id_tuple = resolve_ids(len(images), ids)
        size = check_batch_size(batch_size, self.batch_size)
        out = np.zeros((len(images), self.dim), np.float32)
        with progress_bar(len(images), progress, f"encoding with {self.name}") as advance:
            for start in range(0, len(images), size):
                chunk = images[start : start + size]
                out[start : start + len(chunk)] = self._image_features(np.stack([self.prep(im) for im in chunk]))
                advance(len(chunk))
        vectors = l2_normalize(out)
        return Embeddings(vectors, id_tuple, self.fingerprint, vectors)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 unit text embeddings, in the image embedding space."""
        if isinstance(texts, str):
            raise BadInput("encode_texts() takes a list of texts, got a single string; wrap it in a list")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self._text_features([str(t) for t in texts]))


def _pooled(output: Any) -> Any:
    """transformers 4.x returns a tensor from ``get_*_features``; 5.x a model output with ``pooler_output``."""
    return output if hasattr(output, "numpy") else output.pooler_output


def resolve_hf_folder(model: str | Path) -> Path:
    """A local checkpoint folder, or the snapshot of a model id already in the HF cache (never downloads)."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BadInput(f"{path} is not a Hugging Face checkpoint folder (no config.json in it)")
        return path
    if str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
        raise BadInput(f"the CLIP checkpoint folder {model} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(model), local_files_only=True))
    except (OSError, ValueError) as exc:  # LocalEntryNotFoundError (not cached), HFValidationError (bad id)
        raise BadInput(
            f"{model!r} is neither a local folder nor a model in your Hugging Face cache ({type(exc).__name__}). "
            "visrec never downloads weights: download it yourself (huggingface-cli download "
            f"{model}) or pass the path of a folder saved with save_pretrained()"
        ) from exc


def hash_checkpoint(files: Sequence[Path]) -> str:
    """One sha256 over the (name, sha256) pairs of a checkpoint's files (weights hashes are cached)."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        digest.update(f"{f.name}:{weights_sha256(f)}\n".encode())
    return digest.hexdigest()


class HFClipEncoder(_TorchClip):
    """``hf-clip``: a ``transformers.CLIPModel`` checkpoint (folder or cached model id)."""

    name = "hf-clip"

    def __init__(self, model: str | Path, batch_size: int = 32) -> None:
        try:
            import transformers
        except ImportError as exc:
            raise MissingExtra("transformers", "clip", "The hf-clip encoder") from exc
        self.model_ref = str(model)
        self.folder = resolve_hf_folder(model)
        self.batch_size = batch_size
        self.model = transformers.CLIPModel.from_pretrained(str(self.folder), local_files_only=True).eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        self.prep = _hf_prep(self.folder, int(self.model.config.vision_config.image_size))
        self.input_size = self.prep.resize
        self.dim = int(self.model.config.projection_dim)
        self.joint_dim = self.dim
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)
        files = [f for f in self.folder.iterdir() if f.is_file() and f.suffix in _HASHED_SUFFIXES]
        self.weights_sha = hash_checkpoint(files)
        self.fingerprint = fingerprint(self.name, self.weights_sha, {"preprocess": self.prep.to_dict()})

    def _image_features(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.model.get_image_features(pixel_values=torch.from_numpy(pixels))
        return _pooled(out).float().numpy()

    def _text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        with torch.no_grad():
            out = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return _pooled(out).float().numpy()

    def describe(self) -> dict[str, Any]:
        """JSON facts for an index manifest (``options.model`` is what was passed in)."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "options": {"model": self.model_ref},
            "dim": self.dim,
            "joint_dim": self.joint_dim,
            "input_size": self.input_size,
            "normalization": "l2",
            "weights": {"folder": str(self.folder), "sha256": self.weights_sha},
            "preprocess": self.prep.to_dict(),
        }


def _hf_prep(folder: Path, image_size: int) -> ClipPrep:
    """Preprocessing from ``preprocessor_config.json`` (CLIP defaults where it is silent or absent)."""
    cfg: dict[str, Any] = {}
    path = folder / "preprocessor_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
    size = cfg.get("size", image_size)
    resize = int(size.get("shortest_edge", image_size)) if isinstance(size, dict) else int(size)
    crop = cfg.get("crop_size", image_size)
    crop_hw = (int(crop["height"]), int(crop["width"])) if isinstance(crop, dict) else (int(crop), int(crop))
    if cfg.get("do_center_crop") is False:
        crop_hw = (resize, resize)
    mean = tuple(cfg.get("image_mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(cfg.get("image_std", (0.26862954, 0.26130258, 0.27577711)))
    return ClipPrep(resize, crop_hw, mean, std, int(cfg.get("resample", 3)))  # type: ignore[arg-type]


class OpenClipEncoder(_TorchClip):
    """``open-clip``: an OpenCLIP architecture name plus a local checkpoint file (``open_clip`` package)."""

    name = "open-clip"

    def __init__(self, model: str, pretrained: str | Path, batch_size: int = 32) -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise MissingExtra("open_clip", "openclip", "The open-clip encoder") from exc
        ckpt = Path(pretrained).expanduser()
        if not ckpt.is_file():
            raise BadInput(f"OpenCLIP checkpoint {ckpt} does not exist; visrec never downloads weights")
        self.model_ref, self.batch_size = (str(model), str(ckpt)), batch_size
        self.model = open_clip.create_model(model, pretrained=str(ckpt)).eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", self.model.visual.image_size)
        side = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        resample = 2 if cfg.get("interpolation") == "bilinear" else 3
        self.prep = ClipPrep(side, (side, side), mean, std, resample)  # type: ignore[arg-type]
        self.input_size = side
        self.dim = int(self.encode_texts(["a"]).shape[1])
        self.joint_dim = self.dim
        self.weights_sha = weights_sha256(ckpt)
        self.fingerprint = fingerprint(self.name, self.weights_sha, {"arch": model, "preprocess": self.prep.to_dict()})

    def _image_features(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model.encode_image(torch.from_numpy(pixels)).float().numpy()

    def _text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model.encode_text(self.tokenizer(texts)).float().numpy()

    def describe(self) -> dict[str, Any]:
        """JSON facts for an index manifest."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "options": {"model": self.model_ref[0], "pretrained": self.model_ref[1]},
            "dim": self.dim,
            "joint_dim": self.joint_dim,
            "input_size": self.input_size,
            "normalization": "l2",
            "weights": {"file": self.model_ref[1], "sha256": self.weights_sha},
            "preprocess": self.prep.to_dict(),
        }


def create_hf_clip(model: str | Path, batch_size: int = 32) -> HFClipEncoder:
    """The ``hf-clip`` encoder for a checkpoint folder or a model id in the local HF cache."""
    return HFClipEncoder(model, batch_size=batch_size)


def create_open_clip(model: str, pretrained: str | Path, batch_size: int = 32) -> OpenClipEncoder:
    """The ``open-clip`` encoder for an architecture name and a local checkpoint file."""
    return OpenClipEncoder(model, pretrained, batch_size=batch_size)
