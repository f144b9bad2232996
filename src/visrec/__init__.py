"""visrec: learn what things look like from labeled pictures, then recognise them in new images.

Importing visrec touches no disk, network or model: the public names below load lazily.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Embeddings": "visrec.types",
    "ImageRecord": "visrec.types",
    "LabeledSet": "visrec.types",
    "Neighbors": "visrec.types",
    "Prediction": "visrec.types",
    "Hit": "visrec.types",
    "VisrecError": "visrec.errors",
    "load_dataset": "visrec.data",
    "create_encoder": "visrec.encoders",
    "Index": "visrec.index",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'visrec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
