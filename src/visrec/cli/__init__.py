"""The ``visrec`` command line (``visrec.cli:app``; also ``python -m visrec.cli``).

``main`` holds the core commands (index, search, classify, calibrate, info, data, demo, serve); ``eval``,
``faces``, ``scene``, ``finetune`` and ``scale`` register their command groups on the same app; ``common`` is the
shared error wrapper and printers. ``app`` loads on first use, so ``python -m visrec.cli.eval`` runs that
module alone.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        return importlib.import_module("visrec.cli.main").app
    raise AttributeError(f"module 'visrec.cli' has no attribute {name!r}")
