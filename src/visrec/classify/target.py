"""Whether a calibration reached its target precision, said plainly: overall and per class, with the reasons.

A class counts as below target when its held-out precision is below the target by more than two binomial
standard errors of its answers (``2 * sqrt(P (1 - P) / n)``), so 14 of 15 right at a 95 % target is not called a
miss, while 8 of 10 is. The target is met when the overall precision reaches it and no class is below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

NOVEL_IMAGES = "novel images"
"""What a class is "mistaken for" when its wrong answers are mostly simulated novel images."""


@dataclass(frozen=True)
class TargetVerdict:
    """``met``; ``below``: classes clearly under target; ``few``: classes with fewer than ``min_support``
    held-out images; ``reasons``: human sentences (empty when met)."""

    met: bool
    below: tuple[str, ...] = ()
    few: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)


def _names(xs: list[str], n: int = 5) -> str:
    return ", ".join(xs[:n]) + (f" and {len(xs) - n} more" if len(xs) > n else "")


def target_verdict(
    target: float,
    overall: float,
    class_precision: Mapping[str, float],
    class_answers: Mapping[str, int],
    support: Mapping[str, int],
    confused_with: Mapping[str, str] | None = None,
    min_support: int = 5,
) -> TargetVerdict:
    """Judge a calibration. ``class_precision``/``class_answers``: per candidate class on the held-out stream;
    ``support``: held-out images per class; ``confused_with``: the class each one is most often mistaken for."""
    below = []
    for c, p in class_precision.items():
        n = class_answers.get(c, 0)
        if n > 0 and not math.isnan(p) and p < target - 2.0 * math.sqrt(target * (1 - target) / n):
            below.append(c)
    few = sorted(c for c, n in support.items() if n < min_support)
    reasons = []
    if math.isnan(overall) or overall < target - 1e-9:
        reasons.append(f"overall precision {overall:.1%} is below the {target:.0%} target at every threshold")
    if below:
        conf = confused_with or {}
        pairs = [f"{c} ({class_precision[c]:.0%}" + (f", mistaken for {conf[c]})" if conf.get(c) else ")")
                 for c in sorted(below, key=lambda c: class_precision[c])]  # fmt: skip
        reasons.append(f"{len(below)} classes answer below target: {_names(pairs)}; their images overlap other "
                       "classes (add distinct examples, merge or relabel)")  # fmt: skip
    if few:
        reasons.append(f"{len(few)} classes have fewer than {min_support} held-out images, too few to check: "
                       f"{_names(few)} (add images)")  # fmt: skip
    met = not reasons or (not below and not (math.isnan(overall) or overall < target - 1e-9))
    return TargetVerdict(met, tuple(sorted(below)), tuple(few), tuple(reasons))
