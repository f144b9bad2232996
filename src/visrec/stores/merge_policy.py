"""When to merge the segments of a segmented store: a tiered policy in the manner of Lucene's TieredMergePolicy.

Every update of an index writes one small segment, so segments pile up; each one costs a search call per query,
and tombstoned rows still take space. A segment's *tier* is the order of magnitude of its live rows in units of
:attr:`MergePolicy.floor_rows` on the base :attr:`MergePolicy.segments_per_tier` (tier 0 below
``floor * base``). When a tier holds more than ``segments_per_tier`` segments, ``segments_per_tier`` of them are
merged into one, which lands about one tier up: of the tier's segments sorted by size, the consecutive run whose
largest holds the least share of their rows (Lucene's skew score), so equals are merged and a big segment is
not rewritten with a handful of small ones. A segment whose tombstones reach :attr:`MergePolicy.max_deleted` of
its rows is rewritten without them (Lucene's ``deletesPctAllowed``, 20-50 %; here 1/3).

Chosen defaults: 10 segments per tier (Lucene's ``segmentsPerTier`` and ``maxMergeAtOnce``) and a floor of 10
rows. Simulated with 5,000 and 50,000 single-row commits (``tests/unit/test_segmented_store.py`` checks the
bounds): each row is written 5.5 / 6.5 times in its life and at most 23 / 33 segments exist at once. A floor of
1,000 rows (closer to Lucene's 2 MB at 1472-d) keeps at most 10 / 14 segments but writes each row 24 / 34 times,
because tier 0 then spans three orders of magnitude; searching a few more small segments costs less than that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from visrec.errors import BadInput


@dataclass(frozen=True)
class MergePolicy:
    """Tiered merging: ``segments_per_tier`` (also the tier base and the merge width) and ``floor_rows``."""

    segments_per_tier: int = 10
    floor_rows: int = 10
    max_deleted: float = 1 / 3

    def __post_init__(self) -> None:
        if self.segments_per_tier < 2 or self.floor_rows < 1:
            raise BadInput(
                f"segments_per_tier must be >= 2 and floor_rows >= 1, got {self.segments_per_tier}, {self.floor_rows}"
            )
        if not 0.0 < self.max_deleted <= 1.0:
            raise BadInput(f"max_deleted must be within (0, 1], got {self.max_deleted}")

    def tier(self, live_rows: int) -> int:
        """Tier of a segment with ``live_rows`` rows (0 below ``floor_rows * segments_per_tier``)."""
        if live_rows < self.floor_rows:
            return 0
        return math.floor(math.log(live_rows / self.floor_rows, self.segments_per_tier) + 1e-9)

    def plan(self, rows: Sequence[int], deleted: Sequence[int]) -> list[list[int]]:
        """Groups of segment positions to merge (each group becomes one segment); empty when none is due.

        ``rows[i]``: rows stored in segment ``i`` (live and tombstoned); ``deleted[i]``: its tombstoned rows.
        The result is what one compaction does; merges that its own output would trigger are included.
        """
        if len(rows) != len(deleted):
            raise BadInput(f"got {len(rows)} segment sizes but {len(deleted)} tombstone counts")
        # candidates: (segment positions, live rows, rewritten); a merge replaces its members by one candidate
        cands = [([i], r - d, False) for i, (r, d) in enumerate(zip(rows, deleted, strict=True))]
        dirty = [c for c in cands if rows[c[0][0]] and deleted[c[0][0]] >= self.max_deleted * rows[c[0][0]]]
        if dirty:  # rewritten without their tombstones, together
            cands = [c for c in cands if c not in dirty] + [(_members(dirty), sum(c[1] for c in dirty), True)]
        while True:
            by_tier: dict[int, list[tuple[list[int], int, bool]]] = {}
            for c in cands:
                by_tier.setdefault(self.tier(c[1]), []).append(c)
            full = sorted(t for t, members in by_tier.items() if len(members) > self.segments_per_tier)
            if not full:
                break
            chosen = self._least_skewed(by_tier[full[0]])
            cands = [c for c in cands if c not in chosen] + [(_members(chosen), sum(c[1] for c in chosen), True)]
        return sorted((sorted(c[0]) for c in cands if c[2]), key=lambda g: g[0])

    def _least_skewed(self, members: list[tuple[list[int], int, bool]]) -> list[tuple[list[int], int, bool]]:
        """Of a full tier's segments sorted by size, the ``segments_per_tier`` consecutive ones whose largest
        holds the least share of their rows (Lucene's skew score): merging equals, not one big segment with
        small ones, keeps each row from being rewritten many times within the tier (ties: fewer rows)."""
        ranked = sorted(members, key=lambda c: c[1])
        n = self.segments_per_tier
        windows = [ranked[i : i + n] for i in range(len(ranked) - n + 1)]
        return min(windows, key=_skew)


def _skew(window: Sequence[tuple[list[int], int, bool]]) -> tuple[float, int]:
    total = sum(c[1] for c in window)
    return (max(c[1] for c in window) / total if total else 0.0), total


def _members(cands: Sequence[tuple[list[int], int, bool]]) -> list[int]:
    return [i for c in cands for i in c[0]]
