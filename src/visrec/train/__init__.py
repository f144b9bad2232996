"""Fine-tuning: small heads trained on a frozen encoder's cached embeddings, saved as adapters.

Importing this package imports torch (it trains); pytorch-metric-learning loads only for its losses. Pieces:
:mod:`~visrec.train.data` (leak-free train/val/test of an index's vectors), :mod:`~visrec.train.heads`,
:mod:`~visrec.train.losses` (objectives and miners), :mod:`~visrec.train.loop` (the loop),
:mod:`~visrec.train.guard` (collapse guard), :mod:`~visrec.train.style_views` (style renderings of the labeled
images encoded as extra views), :mod:`~visrec.train.adapter` (save/load, the ``adapted`` encoder),
:mod:`~visrec.train.reproject`, :mod:`~visrec.train.lit` (text head), :mod:`~visrec.train.backbone`
(unfreezing the encoder's last blocks), :mod:`~visrec.train.run` (whole runs).
"""

from __future__ import annotations

from visrec.train.adapter import AdaptedEncoder, Adapter, load_adapter, save_adapter
from visrec.train.data import EmbeddingSplit, load_split, split_embeddings
from visrec.train.guard import CollapseGuard, EmbeddingCollapsed, GuardConfig, measure
from visrec.train.heads import Head, HeadSpec, build_head
from visrec.train.loop import LoopConfig, TrainResult, fit
from visrec.train.losses import METHODS, MINERS, LossOptions, make_miner, make_objective
from visrec.train.reproject import reproject_index
from visrec.train.run import LIT, FinetuneConfig, FinetuneResult, SplitOptions, finetune, finetune_lit, finetune_split

__all__ = [
    "LIT",
    "METHODS",
    "MINERS",
    "AdaptedEncoder",
    "Adapter",
    "CollapseGuard",
    "EmbeddingCollapsed",
    "EmbeddingSplit",
    "FinetuneConfig",
    "FinetuneResult",
    "GuardConfig",
    "Head",
    "HeadSpec",
    "LoopConfig",
    "LossOptions",
    "SplitOptions",
    "TrainResult",
    "build_head",
    "finetune",
    "finetune_lit",
    "finetune_split",
    "fit",
    "load_adapter",
    "load_split",
    "make_miner",
    "make_objective",
    "measure",
    "reproject_index",
    "save_adapter",
    "split_embeddings",
]
