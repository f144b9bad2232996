"""LiT-style text head: both encoders frozen, two small projections learn a shared image-text space.

Each training image is paired with a text about it (its label name in one of a few phrasings, or its caption);
the image head and the text head are trained with a symmetric contrastive loss in which every text of the same
label counts as a positive (so a batch holding two images of one character does not push them apart). The
result lets a text query land near the right images: :func:`text_figures` measures text -> image retrieval
(R@1, R@5, mAP@R, one query per label name) and image -> text classification, before and after.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from visrec.train.data import EmbeddingSplit
from visrec.train.evaluate import classification, neighbours
from visrec.train.guard import CollapseGuard, measure
from visrec.train.heads import Head, HeadSpec, build_head
from visrec.train.loop import (
    EarlyStopping,
    Log,
    LoopConfig,
    TrainResult,
    balanced_batches,
    lr_factor,
    project,
    resolve_device,
    seeded,
)

TEMPLATES = ("{}", "a picture of {}", "an image of {}", "a photo of {}", "{} in a scene")
TextFn = Callable[[list[str]], np.ndarray]


def lit_loss(img: torch.Tensor, txt: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss with label-aware targets.

    ``img``, ``txt``: ``(b, d)`` unit rows (row ``i`` of each is a pair); ``labels``: ``(b,)``; ``scale``: the
    logit scale. Logits ``L = scale * img @ txt.T``; image ``i``'s target is uniform over the texts ``j`` with
    ``labels[j] == labels[i]`` (and the same for each text over images). Returns the mean of the two
    cross-entropies."""
    logits = scale * img @ txt.T
    same = (labels[:, None] == labels[None, :]).to(logits.dtype)
    target = same / same.sum(dim=1, keepdim=True)
    i2t = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    t2i = -(target * torch.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (i2t + t2i)


def text_figures(
    image_z: np.ndarray, image_y: np.ndarray, class_z: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Text -> image retrieval with one query per class (``class_z`` ``(c, d)``) over the images ``image_z``:
    ``t2i_r_at_1`` / ``t2i_r_at_5`` (share of queries with a right image in the top k) and ``t2i_map_at_r``;
    image -> text: ``i2t_top1`` / ``i2t_macro_f1`` (each image labelled with its nearest class text)."""
    from visrec.eval.metrics import RetrievalMetrics

    present = np.unique(image_y)
    q = class_z[present]
    n_rel = (present[:, None] == image_y[None, :]).sum(axis=1)
    pos, _ = neighbours(q, image_z, int(max(10, n_rel.max())))
    m = RetrievalMetrics((1, 5, 10))
    m.update(image_y[pos] == present[:, None], n_rel)
    r = m.compute()
    best = neighbours(image_z, class_z, 1)[0][:, 0]
    cls = classification(image_y, [classes[int(b)] for b in best], classes)
    return {"t2i_r_at_1": r["top1"], "t2i_r_at_5": r["top5"], "t2i_map_at_r": r["map_at_r"],
            "i2t_top1": cls["top1"], "i2t_macro_f1": cls["macro_f1"]}  # fmt: skip


@dataclass(frozen=True)
class LitTexts:
    """Texts to pair with the images: ``table`` ``(u, dt)`` text vectors of the unique strings ``strings``;
    ``choices[i]`` positions in ``table`` of the texts that may pair with row ``i``; ``class_rows[c]`` the
    position of class ``c``'s plain name (the retrieval query)."""

    strings: tuple[str, ...]
    table: np.ndarray
    choices: tuple[np.ndarray, ...]
    class_rows: np.ndarray


def label_texts(data: EmbeddingSplit, encode: TextFn, captions: Sequence[str | None] | None = None) -> LitTexts:
    """Pair each row with its label name in the :data:`TEMPLATES` phrasings, or with its caption when given."""
    strings = [t.format(c) for c in data.classes for t in TEMPLATES]
    extra = sorted({c for c in captions or () if c})
    strings += [s for s in extra if s not in set(strings)]
    where = {s: i for i, s in enumerate(strings)}
    choices = []
    for i, y in enumerate(data.labels):
        cap = captions[i] if captions is not None else None
        opts = [where[cap]] if cap else [where[t.format(data.classes[int(y)])] for t in TEMPLATES]
        choices.append(np.array(opts, np.int64))
    table = np.asarray(encode(strings), np.float32)
    return LitTexts(tuple(strings), table, tuple(choices), np.array([where[c] for c in data.classes], np.int64))


class _LitRun:
    def __init__(self, data: EmbeddingSplit, texts: LitTexts, cfg: LoopConfig, out_dim: int) -> None:
        self.data, self.texts, self.cfg = data, texts, cfg
        self.device = resolve_device(cfg.device)
        self.image = build_head(HeadSpec(data.dim, out_dim), cfg.seed).to(self.device)
        self.text = build_head(HeadSpec(texts.table.shape[1], out_dim), cfg.seed + 1).to(self.device)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), device=self.device))
        params = [*self.image.parameters(), *self.text.parameters(), self.log_scale]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda e: lr_factor(e, cfg))
        self.rows = data.rows("train")
        self.rng = np.random.default_rng(cfg.seed)
        self.table = torch.from_numpy(texts.table).to(self.device)

    def epoch(self) -> float:
        self.image.train()
        self.text.train()
        total, n = 0.0, 0
        labels = self.data.labels[self.rows]
        for b in balanced_batches(labels, self.cfg.batch_size, self.cfg.per_class, self.rng):
            rows = self.rows[b]
            pick = [int(self.rng.choice(self.texts.choices[r])) for r in rows]
            img = self.image(torch.from_numpy(self.data.vectors[rows]).to(self.device))
            txt = self.text(self.table[torch.from_numpy(np.array(pick, np.int64)).to(self.device)])
            y = torch.from_numpy(self.data.labels[rows]).to(self.device)
            loss = lit_loss(img, txt, y, self.log_scale.exp().clamp(max=100.0))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total, n = total + float(loss.detach()) * len(rows), n + len(rows)
        self.sched.step()
        return total / max(n, 1)

    def figures(self, side: str) -> tuple[dict[str, float], np.ndarray]:
        rows = self.data.rows(side)
        z = project(self.image, self.data.vectors[rows], self.device)
        classes_z = project(self.text, self.texts.table[self.texts.class_rows], self.device)
        return text_figures(z, self.data.labels[rows], classes_z, self.data.classes), z


def fit_lit(
    data: EmbeddingSplit, texts: LitTexts, cfg: LoopConfig, out_dim: int = 256, log: Log | None = None
) -> tuple[Head, Head, TrainResult]:
    """Train the image and text heads; keep the epoch with the best validation text -> image mAP@R + image ->
    text top-1. Stops with ``EmbeddingCollapsed`` when the validation image embedding collapses."""
    t0 = time.perf_counter()
    res = TrainResult()
    with seeded(cfg.seed):
        run = _LitRun(data, texts, cfg, out_dim)
        val, z = run.figures("val")
        vy = data.labels[data.rows("val")]
        guard = CollapseGuard(measure(z, vy), len(data.classes), cfg.guard)
        stopper = EarlyStopping(val["t2i_map_at_r"] + val["i2t_top1"], cfg.patience, cfg.min_epochs)
        state = (copy.deepcopy(run.image.state_dict()), copy.deepcopy(run.text.state_dict()))
        for epoch in range(1, cfg.epochs + 1):
            loss = run.epoch()
            val, z = run.figures("val")
            health = measure(z, vy)
            row = {"epoch": epoch, "loss": round(loss, 5), **{f"val_{k}": round(v, 4) for k, v in val.items()},
                   **health.to_dict()}  # fmt: skip
            res.history.append(row)
            res.epochs = epoch
            if log is not None:
                log(f"epoch {epoch:3d}  loss {loss:.4f}  val text->image mAP@R {val['t2i_map_at_r']:.3f}  "
                    f"image->text top-1 {val['i2t_top1']:.3f}  spread {health.spread:.3f}")  # fmt: skip
            guard.check(epoch, health)
            if stopper.improved(val["t2i_map_at_r"] + val["i2t_top1"]):
                res.best_epoch, res.best_val = epoch, row
                state = (copy.deepcopy(run.image.state_dict()), copy.deepcopy(run.text.state_dict()))
            if stopper.stop(epoch):
                res.stopped = stopper.reason
                break
        res.stopped = res.stopped or f"ran all {cfg.epochs} epochs"
    run.image.load_state_dict(state[0])
    run.text.load_state_dict(state[1])
    res.seconds = time.perf_counter() - t0
    return run.image.eval().cpu(), run.text.eval().cpu(), res


def before_figures(joint: np.ndarray | None, data: EmbeddingSplit, encode_joint: TextFn | None) -> dict[str, Any]:
    """Text figures on the test rows in the base encoder's own image-text space (None when it has none)."""
    if joint is None or encode_joint is None:
        return {}
    rows = data.rows("test")
    return text_figures(joint[rows], data.labels[rows], np.asarray(encode_joint(list(data.classes))), data.classes)
