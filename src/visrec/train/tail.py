"""Fine-tune the last blocks of an EfficientNet-Lite encoder (CPU or CUDA GPU) and save them as a new encoder.

The frozen part of the network (stem and every block before the last ``unfreeze``) never changes, so it runs
once per image *view* and its output activations are kept in memory; only the tail (the last ``unfreeze``
MBConv blocks, the 1x1 head convolution and the pooling of the retrieval graph) runs forward and backward in
training. That makes backbone fine-tuning fit a CPU: on naruto_roboflow (244 train images) an epoch of the
two-block tail takes seconds. Views: the plain image, its mirror and ``views - 2`` style renderings
(:class:`visrec.train.styles.StyleAugment`: greyscale, sketches, posterised cartoons, blur, colour jitter,
random crops), so the tail learns features that survive a change of drawing style.

Objective: supervised contrastive (temperature 0.1) on the retrieval features themselves, so the saved network
*is* the encoder (no head). BatchNorm layers keep their ImageNet statistics (eval mode; small batches would
disturb them). Early stopping on validation mAP@R (validation images queried against the train images); the
:class:`~visrec.train.guard.CollapseGuard` checks the train features every epoch. The result is written as
``backbone.safetensors`` + ``encoder.json``: :func:`visrec.encoders.finetuned.create` turns it into an encoder
with its own fingerprint (exported to ONNX on first use like the base model).

On a GPU (``device="cuda"`` or ``"auto"``) the frozen part and the tail run there, the tail's forward pass under
``torch.autocast`` (bfloat16 where supported) with float32 weights; the activations are kept in host memory and
moved a batch at a time, and the weights come back to the CPU before saving.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visrec.errors import BadInput
from visrec.index.fitted import FITTED_IDS
from visrec.train.backbone import autocast_for
from visrec.train.guard import CollapseGuard, GuardConfig, measure
from visrec.train.loop import EarlyStopping, balanced_batches, resolve_device, seeded

BACKBONE_FILE = "backbone.safetensors"
INFO_FILE = "encoder.json"


@dataclass(frozen=True)
class TailConfig:
    """``unfreeze``: last MBConv blocks that train (with the head convolution); ``views``: views per image
    (plain, mirrored, then style renderings); ``seconds``: training time budget; ``device``: ``cpu``, ``cuda``
    or ``auto``; ``amp``: mixed precision on CUDA (ignored on CPU); others as the head loop."""

    unfreeze: int = 2
    epochs: int = 30
    patience: int = 5
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 32
    per_class: int = 4
    temperature: float = 0.1
    views: int = 4
    seconds: float = 600.0
    seed: int = 0
    guard: GuardConfig = field(default_factory=GuardConfig)
    device: str = "cpu"
    amp: bool = True

    def __post_init__(self) -> None:
        if self.unfreeze < 1 or self.epochs < 1 or self.views < 1 or self.batch_size < 2:
            raise BadInput(
                f"unfreeze, epochs and views must be >= 1 and batch_size >= 2, got {self.unfreeze}, "
                f"{self.epochs}, {self.views}, {self.batch_size}"
            )


@dataclass
class TailResult:
    """What a run did: epochs, the kept epoch, why it stopped, seconds (activations / training), validation
    mAP@R per epoch (epoch 0 = before training) and the collapse guard's history."""

    epochs: int
    best_epoch: int
    stopped: str
    seconds_activations: float
    seconds_training: float
    val_map_at_r: list[float]
    guard: list[dict[str, Any]]
    trainable_parameters: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Tail(nn.Module):
    """``forward(a) -> (n, d)`` unit retrieval features from the activations ``a`` entering block ``start``."""

    graph: Any  # the RetrievalGraph (its pooling and chosen stages are reused)
    net: Any  # the EfficientNet-Lite network inside its trunk
    taps: list[int]

    def __init__(self, graph: Any, start: int) -> None:
        super().__init__()
        trunk = graph.trunk
        self.graph = graph
        self.net = trunk.net
        self.start = start
        self.taps = sorted(trunk.taps)  # block index of each tapped stage, in stage order
        used = [trunk.stage_names[i] for i in graph.indices]
        frozen = [s for s, i in zip(trunk.stage_names, self.taps, strict=False) if s in used and i < start]
        if frozen:
            need = len(self.net._blocks) - min(self.taps[trunk.stage_names.index(s)] for s in frozen)
            raise BadInput(f"the encoder's features use {frozen}, inside the frozen blocks; unfreeze at least {need}")

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        maps = []
        x = a
        for i in range(self.start, len(self.net._blocks)):
            x = self.net._blocks[i](x)
            if i in self.taps:
                maps.append(x)
        x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
        maps.append(x)
        by_stage = dict(zip(self.graph.trunk.stage_names[-len(maps) :], maps, strict=True))
        names = [self.graph.trunk.stage_names[i] for i in self.graph.indices]
        parts = [F.normalize(self.graph._pool(by_stage[s]), dim=1) for s in names]
        return F.normalize(torch.cat(parts, dim=1), dim=1)


def _frozen_activations(graph: Any, start: int, batch: torch.Tensor) -> torch.Tensor:
    """Activations entering block ``start``, computed where the graph lives, returned in host memory."""
    net = graph.trunk.net
    with torch.no_grad():
        x = net._swish(net._bn0(net._conv_stem(batch.to(_device(graph)))))
        for block in net._blocks[:start]:
            x = block(x)
    return x.float().cpu()


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def view_activations(
    encoder: Any, graph: Any, start: int, images: Sequence[Any], views: int, seed: int
) -> torch.Tensor:
    """``(views, n, c, h, w)`` float32 activations entering block ``start`` for each view of each image."""
    from PIL import Image, ImageOps

    from visrec.train.styles import StyleAugment

    augment = StyleAugment()
    rng = np.random.default_rng(seed)
    squares = [Image.fromarray(encoder.prep.square(im)) for im in images]
    out = []
    for v in range(views):
        if v == 0:
            shown = squares
        elif v == 1:
            shown = [ImageOps.mirror(s) for s in squares]
        else:
            shown = [augment(ImageOps.mirror(s) if rng.random() < 0.5 else s, rng) for s in squares]
        acts = []
        for s in range(0, len(shown), 32):
            buf = np.empty((len(shown[s : s + 32]), 3, encoder.input_size, encoder.input_size), np.float32)
            acts.append(_frozen_activations(graph, start, torch.from_numpy(encoder.prep.fill(shown[s : s + 32], buf))))
        out.append(torch.cat(acts))
    return torch.stack(out)


def supcon(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) of unit rows ``z`` ``(b, d)`` with labels ``y`` ``(b,)``."""
    sim = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    has = pos.any(dim=1)
    per = -(log_prob.masked_fill(~pos, 0.0).sum(dim=1) / pos.sum(dim=1).clamp(min=1))
    return per[has].mean()


def _features(tail: Tail, acts: torch.Tensor) -> np.ndarray:
    """``(n, d)`` float32 features of host-memory activations, computed on the tail's device in float32."""
    tail.eval()
    dev = _device(tail.net)
    with torch.no_grad():
        return torch.cat([tail(acts[s : s + 64].to(dev)).float().cpu() for s in range(0, len(acts), 64)]).numpy()


def _val_map(tail: Tail, train: torch.Tensor, val: torch.Tensor, ytrain: np.ndarray, yval: np.ndarray) -> float:
    from visrec.eval.metrics import RetrievalMetrics

    g, q = _features(tail, train), _features(tail, val)
    rel = ytrain[np.argsort(-(q @ g.T), axis=1, kind="stable")] == yval[:, None]
    m = RetrievalMetrics((1,))
    m.update(rel, rel.sum(axis=1))
    return float(m.compute()["map_at_r"])


def finetune_tail(
    encoder: Any, images: Sequence[Any], labels: np.ndarray, side: np.ndarray, cfg: TailConfig
) -> tuple[nn.Module, TailResult]:
    """Train the tail of ``encoder`` (an EfficientNet-Lite ``BackboneEncoder``) on ``images`` (paths or RGB
    arrays) with integer ``labels`` ``(n,)`` and ``side`` ``(n,)`` in ``train`` / ``val``. Returns the retrieval
    graph with the best epoch's weights (eval mode) and what happened."""
    graph = encoder.build_torch()
    if not hasattr(graph.trunk, "taps"):
        raise BadInput(f"backbone fine-tuning supports the EfficientNet-Lite encoders, not {encoder.name}")
    blocks = len(graph.trunk.net._blocks)
    if not 1 <= cfg.unfreeze <= blocks:
        raise BadInput(f"{encoder.name} has {blocks} blocks; --unfreeze takes 1 to {blocks}, got {cfg.unfreeze}")
    tr, va = np.flatnonzero(side == "train"), np.flatnonzero(side == "val")
    if not len(tr) or not len(va):
        raise BadInput(f"need train and val images, got {len(tr)} train and {len(va)} val")
    tail = Tail(graph, blocks - cfg.unfreeze)
    graph.to(resolve_device(cfg.device))
    t0 = time.perf_counter()
    with seeded(cfg.seed):
        acts = view_activations(encoder, graph, tail.start, [images[int(i)] for i in tr], cfg.views, cfg.seed)
        val_acts = view_activations(encoder, graph, tail.start, [images[int(i)] for i in va], 1, cfg.seed)[0]
    t_acts = time.perf_counter() - t0
    ytr, yva = labels[tr], labels[va]
    return _train(tail, acts, val_acts, ytr, yva, cfg, t_acts)


def _train(tail: Tail, acts: torch.Tensor, val_acts: torch.Tensor, ytr: np.ndarray, yva: np.ndarray,
           cfg: TailConfig, t_acts: float) -> tuple[nn.Module, TailResult]:  # fmt: skip
    for p in tail.graph.parameters():
        p.requires_grad_(False)
    trainable = [*tail.net._blocks[tail.start :].parameters(), *tail.net._conv_head.parameters(),
                 *tail.net._bn1.parameters()]  # fmt: skip
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    guard = CollapseGuard(measure(_features(tail, acts[0]), ytr), len(set(ytr.tolist())), cfg.guard)
    scores = [_val_map(tail, acts[0], val_acts, ytr, yva)]
    stopper = EarlyStopping(best=scores[0], patience=cfg.patience, min_epochs=1)
    best = {k: v.detach().clone() for k, v in tail.graph.state_dict().items()}
    best_epoch, stopped = 0, f"ran all {cfg.epochs} epochs"
    rng, t0 = np.random.default_rng(cfg.seed), time.perf_counter()
    dev = _device(tail.net)
    cast, _ = autocast_for(dev, cfg.amp)
    with seeded(cfg.seed):
        for epoch in range(1, cfg.epochs + 1):
            tail.eval()  # BatchNorm keeps its statistics; there is no dropout in the tail
            for rows in balanced_batches(ytr, cfg.batch_size, cfg.per_class, rng):
                view = torch.from_numpy(rng.integers(0, len(acts), len(rows)))
                x = acts[view, torch.from_numpy(rows)].to(dev, non_blocking=True)
                with cast:
                    z = tail(x)
                loss = supcon(z.float(), torch.from_numpy(ytr[rows]).to(dev), cfg.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            guard.check(epoch, measure(_features(tail, acts[0]), ytr))
            scores.append(_val_map(tail, acts[0], val_acts, ytr, yva))
            if stopper.improved(scores[-1]):
                best = {k: v.detach().clone() for k, v in tail.graph.state_dict().items()}
                best_epoch = epoch
            if stopper.stop(epoch):
                stopped = stopper.reason
                break
            if time.perf_counter() - t0 + t_acts > cfg.seconds:
                stopped = f"time budget of {cfg.seconds:.0f} s reached"
                break
    tail.graph.load_state_dict(best)
    tail.graph.cpu()
    n_params = sum(p.numel() for p in trainable)
    res = TailResult(epoch, best_epoch, stopped, t_acts, time.perf_counter() - t0, scores, guard.history, n_params)
    return tail.graph.eval(), res


def save_backbone(graph: Any, encoder: Any, folder: str | Path, result: TailResult, cfg: TailConfig,
                  fitted_ids: Sequence[str] = ()) -> Path:  # fmt: skip
    """Write the trunk's weights (safetensors) and ``encoder.json`` (base encoder, options, the run and the ids of
    the index items it was trained or validated on, ``fitted_ids``) in ``folder``."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in graph.trunk.net.state_dict().items()}
    save_file(state, str(out / BACKBONE_FILE))
    info = encoder.describe()
    meta = {"base": encoder.name, "base_fingerprint": encoder.fingerprint, "options": info["options"],
            "config": {k: v for k, v in asdict(cfg).items() if k != "guard"}, "training": result.to_dict(),
            FITTED_IDS: [str(i) for i in fitted_ids]}  # fmt: skip
    (out / INFO_FILE).write_text(json.dumps(meta, indent=1))
    return out
