"""Adapters on disk: ``adapter.safetensors`` (the heads' weights) + ``adapter.json`` (shapes, classes, the base
encoder's fingerprint, training and evaluation figures). No pickle.

An adapter only fits the encoder whose vectors it was trained on: :meth:`Adapter.check_base` (and everything
that applies an adapter) refuses another encoder with :class:`~visrec.errors.ManifestMismatch`.
:class:`AdaptedEncoder` (registered as the ``adapted`` encoder) is the base encoder followed by the adapter, so an
index re-projected with :func:`visrec.train.reproject.reproject_index` answers queries like any other index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visrec.encoders.base import ImageLike
from visrec.errors import BadInput, ManifestMismatch
from visrec.train.heads import Head, HeadSpec, head_from_state
from visrec.types import Embeddings

FORMAT = "visrec-adapter"
SCHEMA_VERSION = 1
WEIGHTS = "adapter.safetensors"
CONFIG = "adapter.json"


@dataclass
class Adapter:
    """Trained heads and what they belong to.

    ``heads["image"]`` maps base image vectors to the new space; ``heads["text"]`` (LiT adapters only) maps text
    vectors of ``text_encoder`` into the same space. ``base``: the base encoder's manifest entry (``name``,
    ``fingerprint``, ``describe``). ``info``: free JSON (method, training and evaluation figures).
    """

    method: str
    heads: dict[str, Head]
    base: dict[str, Any]
    classes: tuple[str, ...] = ()
    text_encoder: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def out_dim(self) -> int:
        return self.heads["image"].spec.out_dim

    @property
    def in_dim(self) -> int:
        return self.heads["image"].spec.in_dim

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every weight as ``<head>.<name>`` -> contiguous float32 CPU tensor."""
        return {
            f"{h}.{k}": v.detach().cpu().float().contiguous() for h, m in self.heads.items()
            for k, v in m.state_dict().items()
        }  # fmt: skip

    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        for name, t in sorted(self.tensors().items()):
            digest.update(name.encode())
            digest.update(t.numpy().tobytes())
        return digest.hexdigest()

    def fingerprint(self) -> str:
        """``adapted-<16 hex>``: changes with the weights, the head shapes or the base encoder."""
        from visrec.encoders.cache import fingerprint

        specs = {h: m.spec.to_dict() for h, m in sorted(self.heads.items())}
        return fingerprint("adapted", self.weights_sha256(), {"base": self.base.get("fingerprint"), "heads": specs})

    def check_base(self, fingerprint: str, name: str, what: str) -> None:
        """Raise ``ManifestMismatch`` unless ``what`` (an index or encoder, for the message) has the base
        encoder's ``fingerprint``."""
        want = self.base.get("fingerprint")
        if fingerprint == want:
            return
        where = f" ({self.path})" if self.path else ""
        raise ManifestMismatch(
            f"the adapter{where} was trained on vectors of encoder {self.base.get('name')!r} (fingerprint {want}), "
            f"but {what} uses encoder {name!r} (fingerprint {fingerprint}). Train an adapter on this encoder's "
            f"index (visrec finetune INDEX --out ADAPTER) or use an index built with {self.base.get('name')!r}"
        )

    def project(self, vectors: np.ndarray, head: str = "image") -> np.ndarray:
        """``(n, in_dim)`` float32 base vectors -> ``(n, out_dim)`` float32 unit rows."""
        from visrec.train.loop import project

        if head not in self.heads:
            raise BadInput(f"this {self.method} adapter has no {head} head (it has: {', '.join(self.heads)})")
        v = np.asarray(vectors, np.float32)
        want = self.heads[head].spec.in_dim
        if v.ndim != 2 or v.shape[1] != want:
            from visrec.errors import DimensionMismatch

            raise DimensionMismatch(f"the adapter's {head} head takes (n, {want}) vectors, got shape {v.shape}")
        return project(self.heads[head], v, torch.device("cpu"))

    def config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "fingerprint": self.fingerprint(),
            "weights_sha256": self.weights_sha256(),
            "heads": {h: m.spec.to_dict() for h, m in self.heads.items()},
            "classes": list(self.classes),
            "base_encoder": self.base,
            "text_encoder": self.text_encoder,
            "info": self.info,
        }


def save_adapter(adapter: Adapter, folder: str | Path) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` into ``folder`` (created); returns the folder."""
    from safetensors.torch import save_file

    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} is a file; give a folder for the adapter")
    out.mkdir(parents=True, exist_ok=True)
    save_file(adapter.tensors(), str(out / WEIGHTS), metadata={"format": FORMAT})
    (out / CONFIG).write_text(json.dumps(adapter.config(), indent=1, default=_json_default) + "\n")
    adapter.path = out.resolve()
    return out


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot store {type(x).__name__} in adapter.json")


def _read_config(folder: Path) -> dict[str, Any]:
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise BadInput(f"{folder} is not an adapter folder (needs {CONFIG} and {WEIGHTS}); train one with: "
                       f"visrec finetune INDEX --out {folder}")  # fmt: skip
    try:
        cfg = json.loads((folder / CONFIG).read_text())
    except ValueError as e:
        raise BadInput(f"{folder / CONFIG} is not valid JSON ({e}); retrain the adapter") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise BadInput(f"{folder / CONFIG} is not a visrec adapter config (format {FORMAT!r} expected)")
    if cfg.get("schema_version", 0) > SCHEMA_VERSION:
        raise ManifestMismatch(f"{folder} has adapter schema {cfg['schema_version']}; upgrade visrec to read it")
    return cfg


def load_adapter(folder: str | Path) -> Adapter:
    """Read an adapter folder written by :func:`save_adapter`; ``BadInput`` if it is not one or is damaged."""
    from safetensors.torch import load_file

    path = Path(folder)
    cfg = _read_config(path)
    tensors = load_file(str(path / WEIGHTS))
    heads = {}
    for name, spec in cfg["heads"].items():
        state = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        heads[name] = head_from_state(HeadSpec(**spec), state)
    adapter = Adapter(cfg["method"], heads, cfg["base_encoder"], tuple(cfg.get("classes", ())),
                      cfg.get("text_encoder"), cfg.get("info", {}), path.resolve())  # fmt: skip
    if adapter.weights_sha256() != cfg.get("weights_sha256"):
        raise BadInput(f"{path / WEIGHTS} does not match the hash in {CONFIG}: the files were changed; retrain")
    return adapter


class AdaptedEncoder:
    """The base encoder followed by an adapter's image head (the ``adapted`` encoder).

    ``vectors`` are the adapter's space. For a LiT adapter (one with a text head) the joint space is that same
    space and :meth:`encode_texts` maps text through MiniLM and the text head; otherwise ``joint`` and
    :meth:`encode_texts` are the base encoder's.
    """

    name = "adapted"

    def __init__(self, adapter: Adapter, base: Any = None) -> None:
        self.adapter = adapter
        self._base = base
        self.dim = adapter.out_dim
        self.lit = "text" in adapter.heads
        base_joint = adapter.base.get("describe", {}).get("joint_dim")
        self.joint_dim = self.dim if self.lit else base_joint
        self.fingerprint = adapter.fingerprint()
        self.input_size = int(adapter.base.get("describe", {}).get("input_size", 224))
        self._text: Any = None

    @property
    def base(self) -> Any:
        """The base encoder, rebuilt from the adapter's record on first use (fingerprint checked)."""
        if self._base is None:
            from visrec.encoders import encoder_from_info

            self._base = encoder_from_info(self.adapter.base.get("describe", {}))
        self.adapter.check_base(self._base.fingerprint, self._base.name, "the given base encoder")
        return self._base

    def encode_images(
        self, images: Sequence[ImageLike], ids: Sequence[str] | None = None,
        batch_size: int | None = None, progress: bool = False,
    ) -> Embeddings:  # fmt: skip
        """Base embeddings, projected: ``(n, out_dim)`` float32 unit rows, in input order."""
        emb = self.base.encode_images(images, ids=ids, batch_size=batch_size, progress=progress)
        z = self.adapter.project(emb.vectors)
        return Embeddings(z, emb.ids, self.fingerprint, z if self.lit else emb.joint)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text vectors in the joint space (see the class docstring)."""
        if not self.lit:
            return np.asarray(self.base.encode_texts(texts), np.float32)
        if self._text is None:
            from visrec.encoders import create_text_encoder

            self._text = create_text_encoder()
            want = (self.adapter.text_encoder or {}).get("fingerprint")
            if self._text.fingerprint != want:
                raise ManifestMismatch(
                    f"the adapter's text head was trained on text encoder {want}, this machine has "
                    f"{self._text.fingerprint}; retrain the LiT adapter"
                )
        return self.adapter.project(self._text.encode(list(texts)), "text")

    def describe(self) -> dict[str, Any]:
        """Manifest facts: the adapter folder (the option that rebuilds this encoder) and the base encoder."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "options": {"adapter": str(self.adapter.path) if self.adapter.path else None},
            "dim": self.dim,
            "joint_dim": self.joint_dim,
            "input_size": self.input_size,
            "normalization": "l2",
            "method": self.adapter.method,
            "base": self.adapter.base.get("describe", {}),
            "description": f"{self.adapter.base.get('name')} + {self.adapter.method} adapter",
        }


def create(adapter: str) -> AdaptedEncoder:
    """The ``adapted`` encoder for the adapter folder ``adapter``."""
    if not adapter:
        raise BadInput("the adapted encoder needs adapter=FOLDER (an adapter written by visrec finetune)")
    return AdaptedEncoder(load_adapter(adapter))


def encoder_entry(adapter: Adapter) -> Mapping[str, Any]:
    """The manifest ``encoder`` entry of an index re-projected with ``adapter``."""
    enc = AdaptedEncoder(adapter)
    return {"name": enc.name, "fingerprint": enc.fingerprint, "describe": enc.describe()}
