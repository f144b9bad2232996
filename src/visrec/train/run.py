"""Whole fine-tuning runs: split the cached embeddings, evaluate, train, evaluate again, build the adapter.

:func:`finetune` trains one of :data:`~visrec.train.losses.METHODS` on an index's vectors; :func:`finetune_lit`
trains the LiT text head. Both evaluate the frozen embedding and the adapted one on the same test rows and
return a :class:`FinetuneResult` holding the (unsaved) adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visrec.index.fitted import FITTED_IDS
from visrec.train.adapter import Adapter
from visrec.train.data import AUTO, EmbeddingSplit, load_split
from visrec.train.evaluate import classification, embedding_figures
from visrec.train.heads import HeadSpec, build_head
from visrec.train.loop import Log, LoopConfig, Progress, TrainResult, fit, project, seeded
from visrec.train.losses import CLASSIFIER_METHODS, METHODS, LossOptions, make_objective
from visrec.train.style_views import HEAD_STYLES, StyleViews, check_styles

LIT = "lit"


@dataclass(frozen=True)
class SplitOptions:
    """How to cut train / val / test (see :mod:`visrec.train.data`)."""

    field: str = AUTO
    train_values: tuple[str, ...] = ("train", "valid")
    test_values: tuple[str, ...] = ("test",)
    val_fraction: float = 0.2


@dataclass(frozen=True)
class FinetuneConfig:
    """One run. ``method``: one of ``METHODS`` or ``lit``; ``head``: projection kind for the metric methods
    (``linear`` / ``mlp``; the ``linear`` and ``mlp`` methods fix it); ``out_dim``: width of the new space;
    ``style_views``: style renderings of each train / val image encoded as extra views
    (:mod:`visrec.train.style_views`; 0: none, the images as indexed only), drawn from ``styles``."""

    method: str = "linear"
    out_dim: int = 256
    head: str = "linear"
    hidden: int = 512
    loss: LossOptions = field(default_factory=LossOptions)
    loop: LoopConfig = field(default_factory=LoopConfig)
    split: SplitOptions = field(default_factory=SplitOptions)
    style_views: int = 0
    styles: tuple[str, ...] = HEAD_STYLES

    def __post_init__(self) -> None:
        from visrec.errors import BadInput

        if self.method not in (*METHODS, LIT):
            raise BadInput(f"method must be one of {', '.join((*METHODS, LIT))}, got {self.method!r}")
        check_styles(self.styles, self.style_views)
        if self.style_views and self.method == LIT:
            raise BadInput("style views train the image heads; the lit method does not take them (drop --style-views)")

    def head_spec(self, in_dim: int, n_classes: int) -> HeadSpec:
        kind = self.method if self.method in CLASSIFIER_METHODS else self.head
        classes = n_classes if self.method in CLASSIFIER_METHODS else 0
        return HeadSpec(in_dim, self.out_dim, kind, self.hidden, classes)


@dataclass
class FinetuneResult:
    """Before/after figures on the test rows, the training record and the adapter (not yet saved)."""

    method: str
    adapter: Adapter
    split: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    training: TrainResult
    after_head: dict[str, Any] | None = None
    views: dict[str, Any] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """Table rows: the frozen embedding, the adapted one (kNN) and, for classifier heads, the head itself."""
        if self.method == LIT:
            return [{"what": "before (base image-text space)", **self.before},
                    {"what": "after (lit heads)", **self.after}]  # fmt: skip
        out = [{"what": "before (frozen, kNN)", **self.before},
               {"what": f"after ({self.method}, kNN)", **self.after}]  # fmt: skip
        if self.after_head:
            out.append({"what": f"after ({self.method} head)", **self.after_head})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "split": self.split,
            "before": self.before,
            "after": self.after,
            "after_head": self.after_head,
            "training": self.training.to_dict(),
            "style_views": self.views,
            "adapter": {
                "fingerprint": self.adapter.fingerprint(),
                "out_dim": self.adapter.out_dim,
                "path": str(self.adapter.path) if self.adapter.path else None,
            },
        }


def _figures(z: np.ndarray, data: EmbeddingSplit, k: int) -> dict[str, Any]:
    figs = embedding_figures(z, data.labels, data.rows("test"), data.rows("train", "val"), data.classes, k)
    return {key: round(float(v), 4) for key, v in figs.items()}


def finetune_split(data: EmbeddingSplit, cfg: FinetuneConfig, log: Log | None = None,
                   progress: Progress | None = None, views: StyleViews | None = None) -> FinetuneResult:  # fmt: skip
    """Train ``cfg.method`` on ``data`` (already split; with the style ``views`` of its train / val images) and
    evaluate before and after on its test rows."""
    import torch

    spec = cfg.head_spec(data.dim, len(data.classes))
    head = build_head(spec, cfg.loop.seed)
    with seeded(cfg.loop.seed):
        objective = make_objective(cfg.method, cfg.loss, len(data.classes), cfg.out_dim)
    before = _figures(data.vectors, data, cfg.loop.k)
    result = fit(head, objective, data, cfg.loop, log, progress, views)
    head = head.cpu().eval()
    z = project(head, data.vectors, torch.device("cpu"))
    after_head = None
    if spec.classes:
        test = data.rows("test")
        with torch.no_grad():
            best = head.logits(torch.from_numpy(z[test])).argmax(dim=1).numpy()
        figs = classification(data.labels[test], [data.classes[int(b)] for b in best], data.classes)
        after_head = {k: round(v, 4) for k, v in figs.items()}
    after = _figures(z, data, cfg.loop.k)
    seen = None if views is None else views.to_dict()
    info = {"training": result.to_dict() | {"history": result.history[-3:]}, "split": data.to_dict(),
            "before": before, "after": after, "after_head": after_head, "style_views": seen,
            "config": _config_dict(cfg),
            FITTED_IDS: [str(data.ids[i]) for i in data.rows("train", "val")]}  # fmt: skip
    adapter = Adapter(cfg.method, {"image": head}, data.encoder, data.classes, None, info)
    return FinetuneResult(cfg.method, adapter, data.to_dict(), before, after, result, after_head, seen)


def _config_dict(cfg: FinetuneConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(cfg)


def finetune(index: str | Path, cfg: FinetuneConfig, log: Log | None = None,
             progress: Progress | None = None) -> FinetuneResult:  # fmt: skip
    """:func:`finetune_split` on the vectors stored in the index folder ``index``; with ``cfg.style_views`` the
    train / val images are first read from their stored paths, rendered and encoded with the index's encoder."""
    s = cfg.split
    data = load_split(index, s.field, s.train_values, s.test_values, s.val_fraction, cfg.loop.seed)
    views = index_style_views(index, data, cfg, progress) if cfg.style_views else None
    return finetune_split(data, cfg, log, progress, views)


def index_style_views(
    index: str | Path, data: EmbeddingSplit, cfg: FinetuneConfig, progress: Progress | None = None
) -> StyleViews:
    """``cfg.style_views`` style views of each train / val image of ``data``, encoded with the index's encoder."""
    from visrec.encoders import encoder_from_info
    from visrec.train.data import item_files
    from visrec.train.style_views import encode_style_views

    encoder = encoder_from_info(data.encoder.get("describe", {}))
    files = item_files(index, data.ids)
    rows = data.rows("train", "val")
    return encode_style_views(encoder, files, data.ids, rows, cfg.styles, cfg.style_views, cfg.loop.seed, progress)


def finetune_lit(
    index: str | Path, cfg: FinetuneConfig, text_encoder: Any = None, log: Log | None = None,
    captions: Sequence[str | None] | None = None,
) -> FinetuneResult:  # fmt: skip
    """Train the LiT text head on the index's vectors and ``text_encoder`` (MiniLM by default); "before" is the
    base encoder's own image-text space when it has one (e.g. the ImageNet-label bridge), else empty."""
    from visrec.index import Index
    from visrec.train.lit import before_figures, fit_lit, label_texts, text_figures

    s = cfg.split
    data = load_split(index, s.field, s.train_values, s.test_values, s.val_fraction, cfg.loop.seed)
    if text_encoder is None:
        from visrec.encoders import create_text_encoder

        text_encoder = create_text_encoder()
    texts = label_texts(data, text_encoder.encode, captions)
    idx = Index(index, mmap=False)
    joint = None if idx.joint is None else np.asarray(idx.joint.get(list(data.ids))[0], np.float32)
    before = before_figures(joint, data, idx.encoder.encode_texts if joint is not None else None)
    image, text, result = fit_lit(data, texts, cfg.loop, cfg.out_dim, log)
    rows = data.rows("test")
    z = project(image, data.vectors[rows])
    after = text_figures(z, data.labels[rows], project(text, texts.table[texts.class_rows]), data.classes)
    after = {k: round(v, 4) for k, v in after.items()}
    before = {k: round(v, 4) for k, v in before.items()}
    info = {"training": result.to_dict() | {"history": result.history[-3:]}, "split": data.to_dict(),
            "before": before, "after": after, "config": _config_dict(cfg)}  # fmt: skip
    te = {"name": text_encoder.name, "fingerprint": text_encoder.fingerprint}
    adapter = Adapter(LIT, {"image": image, "text": text}, data.encoder, data.classes, te, info)
    return FinetuneResult(LIT, adapter, data.to_dict(), before, after, result)


def prepare_index(
    source: str | Path, index: str | Path, fmt: str | None = None, where: str | None = None,
    encoder: str | None = None, progress: Progress | None = None,
) -> Path:  # fmt: skip
    """The index to train on: ``source`` itself when it is an index folder, else ``index`` built (or updated:
    only new or changed images are embedded) from the dataset ``source`` with the index pipeline."""
    from visrec.index.folder import IndexFolder
    from visrec.index.inputs import open_dataset, resolve_encoder
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index

    if IndexFolder.is_index(source):
        return Path(source)
    ds = open_dataset(Path(source), fmt, where)
    enc = resolve_encoder(Path(index), encoder, None)
    build_index(ds, index, enc, IndexConfig(store="exact", calibrate=False), progress)
    return Path(index)
