"""The training loop: balanced batches, AdamW, warm-up + cosine LR, early stopping, collapse guard.

The loop only sees a head, an objective (the loss strategy) and cached embeddings; it never touches the image
encoder. Seeded runs are reproducible: the same seed, data and options give bit-identical weights on one
machine (batches come from a seeded numpy generator; torch's RNG is forked and seeded).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from visrec.errors import BadInput
from visrec.train.data import EmbeddingSplit
from visrec.train.evaluate import embedding_figures, score
from visrec.train.guard import CollapseGuard, GuardConfig, measure
from visrec.train.heads import Head
from visrec.train.losses import Objective
from visrec.train.style_views import StyleViews

Log = Callable[[str], None]
MIN_GAIN = 1e-3


@dataclass
class EarlyStopping:
    """The best validation score so far; ``stop`` once ``patience`` epochs (and at least ``min_epochs`` in all)
    brought no gain above ``MIN_GAIN``."""

    best: float
    patience: int
    min_epochs: int
    since: int = 0

    def improved(self, score: float) -> bool:
        """Record this epoch's score; True when it beats the best by more than ``MIN_GAIN``."""
        if score > self.best + MIN_GAIN:
            self.best, self.since = score, 0
            return True
        self.since += 1
        return False

    def stop(self, epoch: int) -> bool:
        return self.since >= self.patience and epoch >= self.min_epochs

    @property
    def reason(self) -> str:
        return f"early stop: no better validation score for {self.patience} epochs"


"""Smallest rise of the validation score that counts as progress for early stopping."""
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LoopConfig:
    """Optimisation settings. ``per_class``: images of one label drawn together into a batch (so every batch
    has positives for the metric losses); ``patience``: epochs without a better validation score before
    stopping; ``min_epochs``: epochs always run; ``device``: ``cpu``, ``cuda`` or ``auto``."""

    epochs: int = 60
    batch_size: int = 128
    per_class: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 3
    patience: int = 10
    min_epochs: int = 5
    k: int = 10
    seed: int = 0
    device: str = "cpu"
    guard: GuardConfig = field(default_factory=GuardConfig)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "per_class", "patience", "k"):
            if int(getattr(self, name)) < 1:
                raise BadInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise BadInput(f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        if self.seed < 0:
            raise BadInput(f"seed must be >= 0, got {self.seed}")


@dataclass
class TrainResult:
    """What a run did: epochs run, the best epoch (whose weights the head now holds), why it stopped, the
    per-epoch history (loss, lr, validation figures, embedding health) and the seconds it took."""

    epochs: int = 0
    best_epoch: int = 0
    best_val: dict[str, Any] = field(default_factory=dict)
    stopped: str = ""
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "best_val": self.best_val,
                "stopped": self.stopped, "seconds": round(self.seconds, 3), "history": self.history}  # fmt: skip


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded by ``seed``, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("device cuda was asked for but torch sees no GPU; use --device cpu (or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise BadInput(f"device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def balanced_batches(labels: np.ndarray, batch_size: int, per_class: int, rng: np.random.Generator) -> list:
    """One epoch of batches (arrays of row positions): each label's rows are shuffled and cut into chunks of
    ``per_class``; the chunks are shuffled and packed into batches of about ``batch_size``. Every row appears
    exactly once per epoch."""
    chunks: list[np.ndarray] = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        chunks += [rows[i : i + per_class] for i in range(0, len(rows), per_class)]
    batches: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for j in rng.permutation(len(chunks)):
        current.append(chunks[j])
        if sum(len(c) for c in current) >= batch_size:
            batches.append(np.concatenate(current))
            current = []
    if current:
        batches.append(np.concatenate(current))
    return batches


def lr_factor(epoch: int, cfg: LoopConfig) -> float:
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))


def project(head: Head, vectors: np.ndarray, device: torch.device | None = None, batch: int = 4096) -> np.ndarray:
    """``head(vectors)`` as ``(n, out_dim)`` float32 unit rows (eval mode, no gradients)."""
    dev = device or next(head.parameters()).device
    head.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(vectors), batch):
            x = torch.from_numpy(np.ascontiguousarray(vectors[i : i + batch], np.float32)).to(dev)
            out.append(head(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, head.spec.out_dim), np.float32)


class _Epochs:
    """State of one run (kept out of :func:`fit` so each step stays short)."""

    def __init__(
        self, head: Head, objective: Objective, data: EmbeddingSplit, cfg: LoopConfig, views: StyleViews | None
    ) -> None:
        self.head, self.objective, self.data, self.cfg = head, objective, data, cfg
        self.views = views
        self.device = resolve_device(cfg.device)
        head.to(self.device)
        for p in objective.parameters():
            p.data = p.data.to(self.device)
        params = list(head.parameters()) + objective.parameters()
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda e: lr_factor(e, cfg))
        x, y = data.vectors[data.rows("train")], data.labels[data.rows("train")]
        if views is not None:  # a train image's style views are extra training rows with its label
            extra = views.rows_of(data.side, "train")
            x = np.concatenate([x, views.vectors[extra]])
            y = np.concatenate([y, data.labels[views.item[extra]]])
        self.x = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        self.y = torch.from_numpy(y).to(self.device)
        self.rng = np.random.default_rng(cfg.seed)

    def train_one(self) -> float:
        self.head.train()
        total, n = 0.0, 0
        for rows in balanced_batches(self.y.cpu().numpy(), self.cfg.batch_size, self.cfg.per_class, self.rng):
            idx = torch.from_numpy(rows).to(self.device)
            loss = self.objective(self.head(self.x[idx]), self.y[idx], self.head)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += float(loss.detach()) * len(rows)
            n += len(rows)
        self.sched.step()
        return total / max(n, 1)

    def validate(self) -> tuple[dict[str, Any], Any]:
        """Figures of the val images against the train images and, with style views, of the val images' views
        (``style_`` keys) against the same train images; health of the val images (one vector per item)."""
        z = project(self.head, self.data.vectors, self.device)
        val, train = self.data.rows("val"), self.data.rows("train")
        labels, classes, k = self.data.labels, self.data.classes, self.cfg.k
        figs = embedding_figures(z, labels, val, train, classes, k)
        views = self.views
        seen = np.zeros(0, np.int64) if views is None else views.rows_of(self.data.side, "val")
        if views is not None and len(seen):
            zv = project(self.head, views.vectors[seen], self.device)
            both = np.concatenate([z[train], zv])
            tags = np.concatenate([labels[train], labels[views.item[seen]]])
            q, g = np.arange(len(train), len(both)), np.arange(len(train))
            figs |= {f"style_{key}": v for key, v in embedding_figures(both, tags, q, g, classes, k).items()}
        return figs, measure(z[val], labels[val])


def fit(
    head: Head, objective: Objective, data: EmbeddingSplit, cfg: LoopConfig,
    log: Log | None = None, progress: Progress | None = None, views: StyleViews | None = None,
) -> TrainResult:  # fmt: skip
    """Train ``head`` with ``objective`` on the train rows of ``data`` (and the style ``views`` of train images);
    keep the weights of the epoch with the best validation score (kNN top-1 + mAP@R of val queries against the
    train rows; with views, the mean of that and the same score of the val images' views). Raises
    :class:`~visrec.train.guard.EmbeddingCollapsed` when the validation embedding collapses."""
    t0 = time.perf_counter()
    res = TrainResult()
    with seeded(cfg.seed):
        run = _Epochs(head, objective, data, cfg, views)
        start_val, start = run.validate()
        guard = CollapseGuard(start, len(data.classes), cfg.guard)
        stopper = EarlyStopping(val_score(start_val), cfg.patience, cfg.min_epochs)
        best_state = copy.deepcopy(head.state_dict())
        res.best_val = _rounded(start_val)
        for epoch in range(1, cfg.epochs + 1):
            lr = run.opt.param_groups[0]["lr"]
            loss = run.train_one()
            val, health = run.validate()
            row = {"epoch": epoch, "loss": round(loss, 5), "lr": lr, **_rounded(val), **health.to_dict()}
            res.history.append(row)
            res.epochs = epoch
            if log is not None:
                log(_line(row))
            if progress is not None:
                progress("training", epoch, cfg.epochs)
            guard.check(epoch, health)
            if stopper.improved(val_score(val)):
                best_state, res.best_epoch, res.best_val = _copy(head), epoch, _rounded(val)
            if stopper.stop(epoch):
                res.stopped = stopper.reason
                break
        res.stopped = res.stopped or f"ran all {cfg.epochs} epochs"
    head.load_state_dict(best_state)
    head.eval()
    res.seconds = time.perf_counter() - t0
    return res


def val_score(figures: dict[str, Any]) -> float:
    """Early-stopping score: :func:`~visrec.train.evaluate.score` of the val images, averaged with that of their
    style views when there are any (``style_`` keys), so photos and other styles count alike."""
    plain = score(figures)
    if "style_top1" not in figures:
        return plain
    return 0.5 * (plain + score({k[6:]: v for k, v in figures.items() if k.startswith("style_")}))


def _copy(head: Head) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


def _rounded(figs: dict[str, Any]) -> dict[str, Any]:
    return {f"val_{k}": round(float(v), 4) for k, v in figs.items()}


def _line(row: dict[str, Any]) -> str:
    return (
        f"epoch {row['epoch']:3d} loss {row['loss']:.4f} lr {row['lr']:.1e} | val top-1 {row['val_top1']:.3f} "
        f"mAP@R {row['val_map_at_r']:.3f} | spread {row['spread']:.3f} rank {row['effective_rank']:.1f} "
        f"gap {row['gap']:.3f}"
        + (f" | styles top-1 {row['val_style_top1']:.3f} mAP@R {row['val_style_map_at_r']:.3f}"
           if "val_style_top1" in row else "")
    )  # fmt: skip
