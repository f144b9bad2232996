"""Which items of an index may calibrate it: not the ones its encoder was trained on.

An index re-projected with an adapter (``visrec finetune --reproject``, ``visrec reproject``) or re-encoded with a
fine-tuned backbone (``--unfreeze N --reindex``) holds items whose vectors the training pulled toward their class:
held out as calibration queries they look easier than any new image, and the thresholds promise more than they
deliver. The training records those items' ids (``adapter.json``'s ``info.fitted_ids``, a fine-tuned encoder's
``encoder.json`` ``fitted_ids``); the calibration then holds out only the others, which still serve as neighbours.
Plain JSON reads here: no PyTorch needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

FITTED_IDS = "fitted_ids"
"""Key of the trained ids in ``adapter.json``'s ``info`` and in a fine-tuned encoder's ``encoder.json``."""
MIN_HELD_OUT = 10
"""Fewer labeled unseen items than this (or a single class among them): calibrate on every item instead."""


def recorded_fitted_ids(encoder_info: Mapping[str, Any]) -> list[str]:
    """Ids an index's encoder (its manifest ``describe`` entry) was trained on: an ``adapted`` encoder's adapter
    or a ``finetuned`` encoder's folder; [] for any other encoder or when nothing is recorded or readable."""
    options = encoder_info.get("options") or {}
    name = encoder_info.get("name")
    key: tuple[str, ...]
    if name == "adapted" and options.get("adapter"):
        path, key = Path(options["adapter"]) / "adapter.json", ("info", FITTED_IDS)
    elif name == "finetuned" and options.get("model"):
        path, key = Path(options["model"]) / "encoder.json", (FITTED_IDS,)
    else:
        return []
    try:
        data: Any = json.loads(path.read_text())
        for k in key:
            data = data.get(k) or {}
    except (OSError, ValueError, AttributeError):
        return []
    return [str(i) for i in data] if isinstance(data, list) else []


def held_out_ids(
    ids: Sequence[str], labels: Sequence[Sequence[str]], fitted: Iterable[str] | None
) -> frozenset[str] | None:
    """The labeled ids outside ``fitted``, or None -- calibrate on every item -- when nothing is recorded or fewer
    than :data:`MIN_HELD_OUT` labeled items, or one class, are left. ``labels[i]``: label tuple of ``ids[i]``."""
    seen = set(map(str, fitted or ()))
    if not seen:
        return None
    rest = [(i, tuple(labs)) for i, labs in zip(ids, labels, strict=True) if i not in seen and labs]
    if len(rest) < MIN_HELD_OUT or len({lab for _, labs in rest for lab in labs}) < 2:
        return None
    return frozenset(i for i, _ in rest)
