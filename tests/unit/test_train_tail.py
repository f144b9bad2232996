"""Backbone (tail) fine-tuning saved as an encoder: real EfficientNet-Lite0 weights at 64 px on synthetic
images (marked slow: one torch build and one ONNX export)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from visrec.encoders import create_encoder, encoder_from_info
from visrec.errors import BadInput
from visrec.index.fitted import recorded_fitted_ids
from visrec.train.tail import Tail, TailConfig, finetune_tail, save_backbone, supcon

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("visrec-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISREC_CACHE_DIR", str(path))
        yield path


def _shapes(n_per: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Three classes of 64-px pictures (a disc, a bar, a cross) in random colours and positions."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    images, labels = [], []
    for y in range(3):
        for _ in range(n_per):
            cy, cx = rng.integers(24, 40, 2)
            mask = [(yy - cy) ** 2 + (xx - cx) ** 2 < 150, abs(yy - cy) < 5, (abs(yy - cy) < 4) | (abs(xx - cx) < 4)][y]
            img = np.full((64, 64, 3), rng.integers(0, 255, 3), np.uint8)
            img[mask] = rng.integers(0, 255, 3)
            images.append(img)
            labels.append(y)
    return images, np.array(labels)


def test_supcon_is_low_when_labels_cluster() -> None:
    y = torch.tensor([0, 0, 1, 1])
    apart = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.01], [0, 1], [0.01, 1]]), dim=1)
    mixed = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0, 1], [1, 0.01], [0.01, 1]]), dim=1)
    assert float(supcon(apart, y, 0.1)) < float(supcon(mixed, y, 0.1))


def test_tail_finetuning_trains_only_the_tail_and_saves_a_new_encoder(cache: Path, tmp_path: Path) -> None:
    base = create_encoder("efficientnet-lite0", input_size=64, bridge=False)
    images, labels = _shapes(8)
    side = np.where(np.arange(len(labels)) % 4 == 0, "val", "train")
    cfg = TailConfig(unfreeze=2, epochs=2, views=2, lr=1e-3, batch_size=12, per_class=4)
    before = {k: v.clone() for k, v in base.build_torch().trunk.net.state_dict().items()}  # type: ignore[attr-defined]
    graph, res = finetune_tail(base, images, labels, side, cfg)
    after = graph.trunk.net.state_dict()
    assert torch.equal(after["_conv_stem.weight"], before["_conv_stem.weight"])
    assert torch.equal(after["_blocks.13._depthwise_conv.weight"], before["_blocks.13._depthwise_conv.weight"])
    if res.best_epoch > 0:  # the kept epoch changed the last blocks
        assert not torch.equal(after["_blocks.15._project_conv.weight"], before["_blocks.15._project_conv.weight"])
    assert len(res.val_map_at_r) == res.epochs + 1 and len(res.guard) == res.epochs
    folder = save_backbone(graph, base, tmp_path / "ft", res, cfg, ["img-1", "img-2"])
    tuned = create_encoder(str(folder))  # a folder written by finetune --unfreeze is an encoder name
    assert recorded_fitted_ids(tuned.describe()) == ["img-1", "img-2"]  # re-encoding calibrates on the rest
    assert recorded_fitted_ids(base.describe()) == []
    bare = create_encoder(str(save_backbone(graph, base, tmp_path / "ft2", res, cfg)))
    assert bare.fingerprint == tuned.fingerprint and recorded_fitted_ids(bare.describe()) == []  # ids: no new encoder
    assert tuned.name == "finetuned" and tuned.fingerprint != base.fingerprint and tuned.input_size == 64
    assert tuned.joint_dim is None  # the base had no text side, and neither has its fine-tuned version
    info = json.loads(json.dumps(tuned.describe()))
    assert encoder_from_info(info).fingerprint == tuned.fingerprint
    with torch.no_grad():
        expected = graph(torch.from_numpy(tuned.prep.fill(images[:3], np.empty((3, 3, 64, 64), np.float32))))[0]  # type: ignore[attr-defined]
    np.testing.assert_allclose(tuned.encode_images(images[:3]).vectors, expected.numpy(), atol=1e-4)


def test_unfreezing_too_few_blocks_for_the_features_is_refused(cache: Path) -> None:
    base = create_encoder("efficientnet-lite0", input_size=64, bridge=False)
    with pytest.raises(BadInput, match="unfreeze at least 2"):
        Tail(base.build_torch(), 15)  # type: ignore[attr-defined]
