"""Image search re-ranked in the index's centred space with query expansion (visrec.index.rerank)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures_images import make_labeled_tree
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.eval.metrics import RetrievalMetrics
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.rerank import expanded_scores
from visrec.index.writer import build_index


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _map_at_r(ranked: np.ndarray, labels: np.ndarray) -> float:
    m = RetrievalMetrics((1,))
    m.update(labels[ranked] == labels[:, None], np.full(len(labels), ranked.shape[1]))
    return float(m.compute()["map_at_r"])


def test_centring_and_expansion_rank_same_class_items_higher() -> None:
    # Non-negative features with a shared component, as pooled CNN features are: plain cosine is dominated by it.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    centres = rng.normal(0, 1, (4, 64))
    x = _unit(np.maximum(0.6 * centres[labels] + rng.normal(0, 1, (120, 64)), 0) + 2.0)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    plain = np.argsort(-sims, axis=1)[:, :29]
    xc = _unit(x - x.mean(axis=0))
    reranked = []
    for i in range(len(x)):
        cand = np.argsort(-sims[i])[:119]
        reranked.append(cand[np.argsort(-expanded_scores(xc[i], xc[cand]))[:29]])
    before, after = _map_at_r(plain, labels), _map_at_r(np.array(reranked), labels)
    assert after > before + 0.15, (before, after)


def test_expansion_adds_the_best_candidates_to_the_query() -> None:
    query = _unit(np.array([1.0, 0.0, 0.0]))
    cand = _unit(np.array([[0.8, 0.6, 0.0], [0.78, 0.63, 0.0], [0.75, 0.0, 0.66], [0.5, 0.87, 0.0]]))
    plain = expanded_scores(query, cand, expand=0)
    assert np.allclose(plain, cand @ query)
    # Expanded by its two best candidates (both leaning towards axis 1), the query now prefers the item on axis 1
    # over the one on axis 2, which it ranked higher alone.
    expanded = expanded_scores(query, cand, expand=2)
    assert plain[2] > plain[3] and expanded[3] > expanded[2]
    assert np.allclose(expanded_scores(query, cand[:1], expand=5), cand[:1] @ query)  # one candidate: no expansion
    # The query's own copy is indexed among four close neighbours: expanded by all five, the query is nearer
    # the neighbours' direction than its own, yet the copy stays first.
    near = _unit(np.array([[0.6, 0.8, 0.0], [0.62, 0.78, 0.0], [0.58, 0.81, 0.0], [0.6, 0.79, 0.02]]))
    with_copy = np.vstack([near, query])
    expanded_alone = with_copy @ _unit(query + with_copy.sum(axis=0))
    assert int(np.argmax(expanded_alone)) != 4
    scores = expanded_scores(query, with_copy, expand=5)
    assert int(np.argmax(scores)) == 4 and np.allclose(scores[:4], expanded_alone[:4])


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    tmp = tmp_path_factory.mktemp("rerank")
    make_labeled_tree(tmp / "data", ("amber", "blue", "green"), per_class=6, size=32)
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", create_encoder("fake"), IndexConfig(calibrate=False))
    return Index(tmp / "idx.vrx")


def test_search_finds_the_image_itself_first_and_keeps_filters(index: Index) -> None:
    ids = index.store.ids()
    vec, meta = index.store.get(ids[:3])
    for rerank in (True, False):
        hits = index.search_vectors(vec, k=4, rerank=rerank)
        assert [h[0].id for h in hits] == ids[:3]
        assert all(len(h) == 4 and [x.score for x in h] == sorted((x.score for x in h), reverse=True) for h in hits)
    label = meta[0]["labels"][0]
    only = index.search_vectors(vec, k=50, where=f'label == "{label}"')
    assert all(h.labels == (label,) for row in only for h in row) and len(only[0]) == 6
    assert len(index.search_vectors(vec[:1], k=500)[0]) == index.store.count()  # k beyond the index: all items


def test_plain_search_is_the_stores_cosine_order(index: Index) -> None:
    vec, _ = index.store.get(index.store.ids()[:2])
    nb = index.store.search(vec, 5)
    hits = index.search_vectors(vec, k=5, rerank=False)
    assert [[h.id for h in row] for row in hits] == nb.ids.tolist()
    assert np.allclose([[h.score for h in row] for row in hits], nb.scores)
