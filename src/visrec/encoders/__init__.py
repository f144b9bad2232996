"""Image encoders: images (and texts, where there is a text side) in, ``Embeddings`` out.

Backends register lazily by name; importing this package imports neither torch, ONNX Runtime nor
transformers. ``create_encoder()`` gives the default, ``efficientnet-lite0``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from visrec.encoders.base import Encoder, ImageLike, TextEncoder
from visrec.errors import BadInput, ManifestMismatch
from visrec.registry import Registry

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "Encoder",
    "ImageLike",
    "TextEncoder",
    "create_encoder",
    "create_text_encoder",
    "encoder_from_info",
]

DEFAULT_ENCODER = "efficientnet-lite0"

ENCODERS: Registry[Encoder] = Registry("encoder")
ENCODERS.register(
    "efficientnet-lite0",
    "visrec.encoders.efficientnet:create",
    help="EfficientNet-Lite0 ImageNet features (default); text search through the MiniLM label bridge",
)
ENCODERS.register(
    "mobilenet-v2",
    "visrec.encoders.mobilenet:create",
    help="MobileNetV2 ImageNet features; text search through the MiniLM label bridge",
)
ENCODERS.register(
    "hf-clip",
    "visrec.encoders.clip:create_hf_clip",
    help="your own Hugging Face CLIP checkpoint (model=folder or cached id); needs visrec[clip]",
)
ENCODERS.register(
    "open-clip",
    "visrec.encoders.clip:create_open_clip",
    help="your own OpenCLIP checkpoint (model=architecture, pretrained=file); needs open_clip",
)
ENCODERS.register("fake", "visrec.encoders.fake:create", help="deterministic colour features, for tests")
ENCODERS.register(
    "adapted",
    "visrec.train.adapter:create",
    help="a base encoder followed by a fine-tuned adapter (adapter=FOLDER written by visrec finetune)",
)


def create_encoder(name: str = DEFAULT_ENCODER, **options: Any) -> Encoder:
    """Build the encoder registered as ``name`` with keyword ``options`` (see each backend's options).

    Raises ``BadInput`` for an unknown name or option, ``MissingWeights`` / ``MissingExtra`` with the install
    command when a package is absent.
    """
    builder = ENCODERS.builder(name)
    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise BadInput(f"unknown option(s) {unknown} for the {name} encoder; known options: {sorted(params)}")
    return builder(**options)


def create_text_encoder() -> TextEncoder:
    """The sentence encoder used to match free text with label names (all-MiniLM-L6-v2, 384-d)."""
    from visrec.encoders.text import MiniLMTextEncoder

    return MiniLMTextEncoder()


def encoder_from_info(info: Mapping[str, Any]) -> Encoder:
    """Rebuild the encoder an index manifest recorded with ``Encoder.describe()`` (its name and options).

    Raises ``ManifestMismatch`` when the rebuilt encoder's fingerprint differs from the recorded one (the
    weights or the preprocessing code changed since the index was built).
    """
    name = info.get("name")
    if not isinstance(name, str):
        raise BadInput(f"encoder info has no 'name' (got keys {sorted(info)}); expected the output of describe()")
    options = info.get("options") or {}
    if not isinstance(options, Mapping):
        raise BadInput(f"encoder info 'options' must be a mapping, got {type(options).__name__}")
    encoder = create_encoder(name, **dict(options))
    recorded = info.get("fingerprint")
    if recorded is not None and recorded != encoder.fingerprint:
        raise ManifestMismatch(
            f"the index was built with encoder {recorded}, but {name} with the same options is now "
            f"{encoder.fingerprint} (its weights or preprocessing changed); rebuild the index with this "
            "encoder, or reinstall the weights the index was built with"
        )
    return encoder
