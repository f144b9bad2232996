"""Image encoders: images (and texts, where there is a text side) in, ``Embeddings`` out.

Backends register lazily by name; importing this package imports neither torch, ONNX Runtime nor
transformers. ``create_encoder()`` gives the default, ``efficientnet-lite0``; ``create_encoder("a+b")`` an
ensemble of registered encoders.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
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
ENSEMBLE_SEPARATOR = "+"

ENCODERS: Registry[Encoder] = Registry("encoder")
ENCODERS.register(
    "efficientnet-lite0",
    "visrec.encoders.efficientnet:create",
    help="EfficientNet-Lite0 ImageNet features (default); text search through the MiniLM label bridge",
)
ENCODERS.register(
    "efficientnet-lite1",
    "visrec.encoders.efficientnet:create_lite1",
    help="EfficientNet-Lite1 ImageNet features (256 px); text search through the MiniLM label bridge",
)
ENCODERS.register(
    "efficientnet-lite2",
    "visrec.encoders.efficientnet:create_lite2",
    help="EfficientNet-Lite2 ImageNet features (256 px); text search through the MiniLM label bridge",
)
ENCODERS.register(
    "mobilenet-v2",
    "visrec.encoders.mobilenet:create",
    help="MobileNetV2 ImageNet features; text search through the MiniLM label bridge",
)
ENCODERS.register(
    "efficientnet-ensemble",
    "visrec.encoders.ensemble:create_recommended",
    help="the recommended accurate ensemble: EfficientNet-Lite0 (weight 2) + Lite1 + Lite2, each averaged with the "
    "mirror image (several times slower to index than the default; needs visrec[backbones])",
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
ENCODERS.register(
    "finetuned",
    "visrec.encoders.finetuned:create",
    help="an EfficientNet-Lite encoder with its last blocks fine-tuned (model=FOLDER written by "
    "visrec finetune --unfreeze N)",
)
ENCODERS.register("fake", "visrec.encoders.fake:create", help="deterministic colour features, for tests")
ENCODERS.register(
    "adapted",
    "visrec.train.adapter:create",
    help="a base encoder followed by a fine-tuned adapter (adapter=FOLDER written by visrec finetune)",
)


def create_encoder(name: str = DEFAULT_ENCODER, **options: Any) -> Encoder:
    """Build the encoder registered as ``name`` with keyword ``options`` (see each backend's options).

    A folder written by ``visrec finetune --unfreeze N`` is a name too (the ``finetuned`` encoder).
    Names joined by ``+`` (``"efficientnet-lite0+mobilenet-v2"``) build an ensemble of those encoders (see
    :mod:`visrec.encoders.ensemble`; options ``weights``, ``members``, or options shared by every member).
    Raises ``BadInput`` for an unknown name or option, ``MissingWeights`` / ``MissingExtra`` with the install
    command when a package is absent.
    """
    if ENSEMBLE_SEPARATOR in name and name not in ENCODERS:
        from visrec.encoders.ensemble import create as create_ensemble

        return create_ensemble(name, **options)
    if name not in ENCODERS and (Path(name).expanduser() / "encoder.json").is_file():
        return create_encoder("finetuned", model=name, **options)  # a folder written by finetune --unfreeze
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
