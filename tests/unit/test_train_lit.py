"""LiT text head: text queries land near the right images after training, measured before and after."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_images import make_labeled_tree
from tests.unit.train_synthetic import synthetic_split
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.train import FinetuneConfig, LoopConfig, finetune_lit, load_adapter, save_adapter
from visrec.train.lit import fit_lit, label_texts, text_figures
from visrec.train.loop import project

LOOP = LoopConfig(epochs=15, batch_size=32, lr=0.02, patience=100)


class HashText:
    """A text encoder stand-in: the sum of a fixed pseudo-random vector per word (a bag of words)."""

    name = "hash-text"
    fingerprint = "hash-text-0"
    dim = 12

    @staticmethod
    def _word(w: str) -> np.ndarray:
        return np.random.default_rng(int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")).normal(size=12)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.stack([sum(self._word(w) for w in t.split()) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def test_text_figures_on_a_perfect_and_a_useless_space() -> None:
    y = np.repeat(np.arange(3), 4)
    classes = ("a", "b", "c")
    perfect = text_figures(np.eye(3, dtype=np.float32)[y], y, np.eye(3, dtype=np.float32), classes)
    assert perfect == {"t2i_r_at_1": 1.0, "t2i_r_at_5": 1.0, "t2i_map_at_r": 1.0, "i2t_top1": 1.0,
                       "i2t_macro_f1": 1.0}  # fmt: skip
    wrong = text_figures(np.eye(3, dtype=np.float32)[y], y, np.eye(3, dtype=np.float32)[[1, 2, 0]], classes)
    assert wrong["t2i_r_at_1"] == 0.0 and wrong["i2t_top1"] == 0.0


def test_trained_heads_align_label_texts_with_their_images() -> None:
    data = synthetic_split()
    texts = label_texts(data, HashText().encode)
    assert len(texts.strings) == len(set(texts.strings)) and len(texts.choices) == len(data.ids)
    image, text, res = fit_lit(data, texts, LOOP, out_dim=16)
    test = data.rows("test")
    z = project(image, data.vectors[test])
    after = text_figures(z, data.labels[test], project(text, texts.table[texts.class_rows]), data.classes)
    assert after["i2t_top1"] >= 0.9 and after["t2i_r_at_1"] == 1.0 and after["t2i_map_at_r"] > 0.8
    assert res.best_epoch >= 1


def test_finetune_lit_reports_before_and_saves_a_text_head(tmp_path: Path) -> None:
    root = tmp_path / "d"
    make_labeled_tree(root, ("amber", "blue", "crimson"), per_class=10, size=40)
    idx = tmp_path / "idx.vrx"
    build_index(load_dataset(root), idx, create_encoder("fake", dim=16), IndexConfig(calibrate=False))
    res = finetune_lit(idx, FinetuneConfig("lit", 16, loop=LOOP), text_encoder=HashText())
    assert set(res.before) == set(res.after) == {"t2i_r_at_1", "t2i_r_at_5", "t2i_map_at_r", "i2t_top1",
                                                 "i2t_macro_f1"}  # fmt: skip
    assert res.after["i2t_top1"] >= res.before["i2t_top1"]
    saved = load_adapter(save_adapter(res.adapter, tmp_path / "lit"))
    assert set(saved.heads) == {"image", "text"} and saved.text_encoder == {
        "name": "hash-text",
        "fingerprint": "hash-text-0",
    }
    vecs = HashText().encode(["amber"])
    assert np.array_equal(saved.project(vecs, "text"), res.adapter.project(vecs, "text"))
    with pytest.raises(BadInput, match="has no video head"):
        saved.project(vecs, "video")
