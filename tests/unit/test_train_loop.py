"""The training loop and the splits it trains on: leak-free sides, balanced batches, seeded runs, real gains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.train_synthetic import ENCODER, synthetic_items, synthetic_split
from visrec.errors import BadInput
from visrec.train import FinetuneConfig, LoopConfig, finetune_split, split_embeddings
from visrec.train.loop import balanced_batches

FAST = LoopConfig(epochs=10, batch_size=32, lr=0.02, patience=100)
SHORT = LoopConfig(epochs=3, batch_size=32, lr=0.02, patience=100)


def test_split_follows_grouped_split_and_keeps_near_duplicates_together() -> None:
    ids, vecs, metas = synthetic_items()
    hashes = np.random.default_rng(0).integers(0, 256, (len(ids) // 2, 32), dtype=np.uint8)
    for i, m in enumerate(metas):  # pairs of consecutive images are near-duplicates (same pHash)
        m["extra"]["phash"] = hashes[i // 2].tobytes().hex()
    data = split_embeddings(ids, vecs, metas, ENCODER, seed=0)
    side = dict(zip(data.ids, data.side, strict=True))
    for i, m in zip(ids, metas, strict=True):
        assert (side[i] == "test") == (m["extra"]["grouped_split"] == "test")
    assert data.counts()["val"] > 0
    for a in range(0, len(ids), 2):
        if metas[a]["extra"]["grouped_split"] == metas[a + 1]["extra"]["grouped_split"] == "train":
            assert side[ids[a]] == side[ids[a + 1]], "a near-duplicate pair straddles train and val"


def test_split_refuses_a_single_label() -> None:
    ids, vecs, metas = synthetic_items(n_classes=1)
    with pytest.raises(BadInput, match="at least two labeled classes"):
        split_embeddings(ids, vecs, metas, ENCODER)


def test_balanced_batches_cover_every_row_once_with_label_chunks() -> None:
    labels = np.repeat(np.arange(5), [7, 3, 9, 4, 1])
    batches = balanced_batches(labels, 8, 4, np.random.default_rng(0))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(labels)))
    assert all(len(b) >= 8 for b in batches[:-1])


def test_same_seed_same_adapter_other_seed_other_adapter() -> None:
    data = synthetic_split()
    runs = [finetune_split(data, FinetuneConfig("arcface", 16, loop=SHORT)) for _ in range(2)]
    a, b = (r.adapter.tensors() for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].adapter.fingerprint() == runs[1].adapter.fingerprint()
    other = finetune_split(data, FinetuneConfig("arcface", 16, loop=LoopConfig(**{**SHORT.__dict__, "seed": 1})))
    c = other.adapter.tensors()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_triplet_training_lifts_retrieval_on_the_same_test_split() -> None:
    res = finetune_split(synthetic_split(), FinetuneConfig("triplet", 16, loop=FAST))
    assert res.after["map_at_r"] > res.before["map_at_r"] + 0.3
    assert res.after["top1"] >= res.before["top1"]
    assert res.training.best_epoch >= 1 and res.training.history
    rows = res.rows()
    assert rows[0]["what"].startswith("before") and rows[1]["what"].startswith("after")


def test_classifier_head_reports_its_own_accuracy() -> None:
    res = finetune_split(synthetic_split(), FinetuneConfig("mlp", 16, loop=SHORT))
    assert res.after_head is not None and 0.0 <= res.after_head["top1"] <= 1.0
    assert {"top1", "macro_f1"} <= set(res.after_head)


def test_loop_config_refuses_nonsense() -> None:
    with pytest.raises(BadInput):
        LoopConfig(lr=0.0)
    with pytest.raises(BadInput, match="method"):
        FinetuneConfig("bogus")
