"""Each fine-tuning objective against an independent numpy computation on a tiny batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visrec.errors import BadInput
from visrec.train.heads import HeadSpec, build_head
from visrec.train.lit import lit_loss
from visrec.train.losses import LossOptions, make_objective

Y = np.array([0, 0, 0, 1, 1, 1, 2, 2])


def _batch(seed: int = 0, dim: int = 4) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    z = np.random.default_rng(seed).normal(size=(len(Y), dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z, torch.tensor(z, dtype=torch.float64), torch.tensor(Y)


def _loss(method: str, z: torch.Tensor, y: torch.Tensor, **opts: object) -> float:
    torch.manual_seed(0)
    obj = make_objective(method, LossOptions(**opts), n_classes=3, dim=z.shape[1])  # type: ignore[arg-type]
    for p in obj.parameters():
        p.data = p.data.double()
    return float(obj(z, y, None).detach())  # type: ignore[arg-type]


def test_cross_entropy_matches_a_hand_computation() -> None:
    z = np.array([[1.0, 0.0], [0.0, 1.0]])
    head = build_head(HeadSpec(2, 2, classes=2), seed=0).double()
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64))  # type: ignore[union-attr]
    obj = make_objective("linear", LossOptions(label_smoothing=0.0), 2, 2)
    got = float(obj(torch.tensor(z), torch.tensor([0, 1]), head).detach())
    # logits = 16 * cos: row 0 -> (16, 9.6), row 1 -> (0, 12.8); CE = mean(-log softmax[true])
    want = np.mean([np.log(1 + np.exp(9.6 - 16)), np.log(1 + np.exp(0 - 12.8))])
    assert got == pytest.approx(want, rel=1e-9)


def test_supcon_and_infonce_match_numpy() -> None:
    z, zt, yt = _batch()
    s = z @ z.T / 0.1
    info, sup = [], []
    for a in range(len(Y)):
        others = [j for j in range(len(Y)) if j != a]
        pos = [p for p in others if Y[p] == Y[a]]
        other_label = Y[a] != Y
        neg = np.exp(s[a, other_label]).sum()
        info += [-np.log(np.exp(s[a, p]) / (np.exp(s[a, p]) + neg)) for p in pos]
        sup.append(-np.mean([s[a, p] - np.log(np.exp(s[a, others]).sum()) for p in pos]))
    assert _loss("infonce", zt, yt) == pytest.approx(np.mean(info), rel=1e-9)
    assert _loss("supcon", zt, yt) == pytest.approx(np.mean(sup), rel=1e-9)
    assert np.mean(info) != pytest.approx(np.mean(sup))  # the two really differ with 3 images per label


def test_triplet_with_batch_hard_mining_matches_numpy() -> None:
    z, zt, yt = _batch(1)
    d = np.sqrt(np.maximum(2 - 2 * z @ z.T, 0))
    per_anchor = []
    for a in range(len(Y)):
        hardest_pos = max(d[a, p] for p in range(len(Y)) if p != a and Y[p] == Y[a])
        hardest_neg = min(d[a, n] for n in range(len(Y)) if Y[n] != Y[a])
        per_anchor.append(max(hardest_pos - hardest_neg + 0.2, 0.0))
    losses = np.array(per_anchor)
    want = losses[losses > 0].mean()  # pytorch-metric-learning averages the triplets that still violate
    assert _loss("triplet", zt, yt, miner="batch-hard") == pytest.approx(want, rel=1e-9)


def test_arcface_matches_numpy() -> None:
    z, zt, yt = _batch(2)
    torch.manual_seed(0)
    obj = make_objective("arcface", LossOptions(), 3, 4)
    w = obj.parameters()[0].detach().double().numpy()
    cos = z @ (w / np.linalg.norm(w, axis=0, keepdims=True))
    m = np.radians(28.6)
    logits = cos.copy()
    for i, t in enumerate(Y):
        theta = np.arccos(np.clip(cos[i, t], -1, 1))
        logits[i, t] = np.cos(theta + m) if theta <= np.pi - m else cos[i, t] - m * np.sin(m)
    logits *= 32.0
    lse = np.log(np.exp(logits).sum(axis=1))
    want = np.mean(lse - logits[np.arange(len(Y)), Y])
    assert _loss("arcface", zt, yt) == pytest.approx(want, rel=1e-6)


def test_lit_loss_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    img = rng.normal(size=(5, 3))
    txt = rng.normal(size=(5, 3))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    y = np.array([0, 0, 1, 2, 2])
    logits = 10.0 * img @ txt.T
    target = (y[:, None] == y[None, :]).astype(float)
    target /= target.sum(axis=1, keepdims=True)

    def ce(lg: np.ndarray) -> float:
        logp = lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))
        return float(-(target * logp).sum(axis=1).mean())

    want = 0.5 * (ce(logits) + ce(logits.T))
    got = lit_loss(torch.tensor(img), torch.tensor(txt), torch.tensor(y), torch.tensor(10.0))
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_unknown_method_and_bad_options_are_refused() -> None:
    with pytest.raises(BadInput, match="method must be one of"):
        make_objective("softtriple", LossOptions(), 3, 4)
    with pytest.raises(BadInput, match="miner"):
        LossOptions(miner="hardest")
