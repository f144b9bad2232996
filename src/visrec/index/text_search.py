"""Text -> image search of an opened index: label names first, else the encoder's image-text space.

:func:`search_text` is what :meth:`visrec.index.reader.Index.search_text` runs: a query that names a label
(MiniLM similarity against the label names, :func:`match_labels`) returns that label's most typical images;
otherwise the query is encoded by the encoder's text side and searched among the joint vectors, and through the
ImageNet label bridge the result says which classes the query and each hit are seen as.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visrec.errors import BadInput, VisrecError
from visrec.types import Hit

if TYPE_CHECKING:
    from visrec.encoders.base import TextEncoder
    from visrec.index.reader import Index
    from visrec.index.snapshot import Snapshot

ROUTES = ("auto", "labels", "joint")


@dataclass(frozen=True)
class TextSearchResult:
    """Hits for a text query and how they were found.

    ``route`` is ``"labels"`` when the query matched the index's label names (``matched`` lists the names and
    their text similarity) or ``"joint"`` when it was searched in the encoder's image-text space. Through the
    ImageNet label bridge, ``concepts`` are the classes the query is read as, ``seen_as`` the classes each hit
    is seen as, and ``matches_query`` whether any hit is seen as the query's first concept (False: the index
    probably holds nothing the query names); all empty / None otherwise.
    """

    query: str
    route: str
    matched: tuple[tuple[str, float], ...]
    hits: tuple[Hit, ...]
    concepts: tuple[str, ...] = ()
    seen_as: tuple[tuple[str, ...], ...] = ()
    matches_query: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "route": self.route,
            "matched_labels": [[n, round(s, 4)] for n, s in self.matched],
            "hits": [h.to_dict() for h in self.hits],
            "concepts": list(self.concepts),
            "seen_as": [list(c) for c in self.seen_as],
            "matches_query": self.matches_query,
        }


def match_labels(
    names: list[str], text_encoder: TextEncoder, query: str, min_similarity: float = 0.6
) -> list[tuple[str, float]]:
    """Label ``names`` whose text similarity to ``query`` is at least ``min_similarity``, best first.

    A case-insensitive exact match (or the query naming the label as a word) scores 1.0; names more than 0.05
    below the best are dropped.
    """
    if not names:
        return []
    q = query.strip().lower()
    words = set(q.replace(",", " ").split())
    sims = text_encoder.encode(names) @ text_encoder.encode([query])[0]
    scored = [(n, 1.0 if n.lower() == q or n.lower() in words else float(s)) for n, s in zip(names, sims, strict=True)]
    best = max(s for _, s in scored)
    keep = [(n, s) for n, s in scored if s >= min_similarity and s >= best - 0.05]
    return sorted(keep, key=lambda x: -x[1])


def search_text(
    index: Index, query: str, k: int = 10, where: str | None = None, route: str = "auto"
) -> TextSearchResult:
    """Text -> image search on ``index``'s current generation (see :meth:`visrec.index.reader.Index.search_text`)."""
    if route not in ROUTES:
        raise BadInput(f"route must be auto, labels or joint, got {route!r}")
    s = index.snapshot()
    matched = index.match_labels(query, snap=s) if route in ("auto", "labels") else []
    if matched:
        return TextSearchResult(query, "labels", tuple(matched), tuple(label_hits(s, matched, k, where)))
    if route == "labels":
        return TextSearchResult(query, "labels", (), ())
    if s.joint is None:
        raise VisrecError(
            f"no label of this index matches {query!r} and its encoder "
            f"({s.encoder_info.get('name')}) has no text side; try one of: {', '.join(index.labels(s))}"
        )
    q = index.encoder.encode_texts([query])
    hits = tuple(s.hits(s.joint.search(q, k, where))[0])
    bridge = getattr(index.encoder, "bridge", None)
    if bridge is None or not hits:
        return TextSearchResult(query, "joint", (), hits)
    concepts = bridge.concepts(q, top=3)[0]
    seen = tuple(bridge.concepts(s.joint.get([h.id for h in hits])[0], top=bridge.top_k))
    match = any(concepts[0] in seen_as for seen_as in seen)  # an image the bridge sees as the first concept
    return TextSearchResult(query, "joint", (), hits, concepts, tuple(seen_as[:3] for seen_as in seen), match)


def label_hits(s: Snapshot, matched: list[tuple[str, float]], k: int, where: str | None) -> list[Hit]:
    """The ``k`` images closest to the matched labels' mean vectors (each within its label, and ``where``)."""
    protos, classes = s.prototypes()
    hits: list[Hit] = []
    for name, _ in matched:
        cond = f"label == {json.dumps(name)}"
        cond = cond if where is None else f"({cond}) and ({where})"
        hits += s.search(protos[classes.index(name)][None, :], k, cond)[0]
    hits.sort(key=lambda h: -h.score)
    return hits[:k]
