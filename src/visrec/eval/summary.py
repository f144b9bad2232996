"""Classification summary on labeled queries: top-1, macro-F1, unknown rate, per-class figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visrec.types import Prediction

UNKNOWN = "<unknown>"


@dataclass(frozen=True)
class ClassificationSummary:
    """Figures over ``n`` labeled queries.

    ``top1``: share of queries whose answer is one of their true labels (an unknown answer counts as wrong);
    ``top1_raw``: the same for the best candidate before the unknown decision; ``accepted_accuracy``: top-1 among
    the answered (not unknown) queries; ``unknown_rate``: share answered unknown; ``macro_f1``: F1 averaged over
    the true classes, with unknown as a predicted class of its own; ``per_class``: precision, recall, F1, support.
    """

    n: int
    top1: float
    top1_raw: float
    accepted_accuracy: float
    unknown_rate: float
    macro_f1: float
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        r = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "per_class"}
        r["per_class"] = {c: {k: round(v, 4) for k, v in d.items()} for c, d in self.per_class.items()}
        return r


def summarize(truths: Sequence[Sequence[str]], preds: Sequence[Prediction]) -> ClassificationSummary:
    """Summary of predictions against true label tuples (one per query; multi-label: any label counts)."""
    from sklearn.metrics import precision_recall_fscore_support

    if len(truths) != len(preds) or not preds:
        raise ValueError(f"need one truth per prediction and at least one: {len(truths)} vs {len(preds)}")
    answer = [p.label if p.label is not None else UNKNOWN for p in preds]
    ok = np.array([a in t for a, t in zip(answer, truths, strict=True)])
    ok_raw = np.array([p.candidate in t for p, t in zip(preds, truths, strict=True)])
    unknown = np.array([p.label is None for p in preds])
    # Single-label view for F1: the true label that the answer hit, else the first.
    y_true = [a if a in t else (t[0] if t else UNKNOWN) for a, t in zip(answer, truths, strict=True)]
    classes = sorted({y for y in y_true if y != UNKNOWN})
    p, r, f, s = precision_recall_fscore_support(y_true, answer, labels=classes, zero_division=0)
    per = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": float(s[i])}
           for i, c in enumerate(classes)}  # fmt: skip
    acc = float(ok[~unknown].mean()) if (~unknown).any() else float("nan")
    return ClassificationSummary(
        n=len(preds),
        top1=float(ok.mean()),
        top1_raw=float(ok_raw.mean()),
        accepted_accuracy=acc,
        unknown_rate=float(unknown.mean()),
        macro_f1=float(np.mean(f)) if len(classes) else float("nan"),
        per_class=per,
    )
