"""When to merge the segments of a segmented store: a tiered policy in the manner of Lucene's TieredMergePolicy.

Every update of an index writes one small segment, so segments pile up; searching many of them costs one
search call each, and tombstoned rows still occupy space. A segment's *tier* is the order of magnitude of its
live rows in units of :attr:`MergePolicy.floor_rows`, on the base :attr:`MergePolicy.segments_per_tier`
(``floor * base**t <= rows < floor * base**(t+1)``; everything below the floor is tier 0). When a tier holds more
than ``segments_per_tier`` segments, its ``segments_per_tier`` smallest are merged into one, which lands about
one tier up. So a row is rewritten about once per tier it climbs, ``log_base(n / floor)`` times in its life
(write amplification), the number of segments stays below ``(segments_per_tier + 1) * tiers``, and an update
that triggers no merge writes only its own rows. A segment whose tombstones reach :attr:`MergePolicy.max_deleted`
of its rows is rewritten without them (Lucene's ``deletesPctAllowed``, 20-50 %; here 1/3).

Lucene merges by bytes with a 2 MB floor and 10 segments per tier; rows of one width are a proxy for bytes, and
the floor of 1,000 rows (about 6 MB at 1472-d float32) keeps the tiny segments of single-image updates in one
tier that is merged cheaply every ten updates.
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
    floor_rows: int = 1_000
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
            chosen = sorted(by_tier[full[0]], key=lambda c: c[1])[: self.segments_per_tier]
            cands = [c for c in cands if c not in chosen] + [(_members(chosen), sum(c[1] for c in chosen), True)]
        return sorted((sorted(c[0]) for c in cands if c[2]), key=lambda g: g[0])


def _members(cands: Sequence[tuple[list[int], int, bool]]) -> list[int]:
    return [i for c in cands for i in c[0]]
