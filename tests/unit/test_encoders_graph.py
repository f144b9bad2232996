"""The exported retrieval graph on a toy trunk: pooling, per-block normalisation, flip averaging."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from visrec.encoders.graph import RetrievalGraph, Trunk, gem  # noqa: E402


class _Toy(Trunk):
    stage_names = ("small", "head")

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6, 1000)

    def forward(self, x):  # type: ignore[no-untyped-def]
        s = torch.relu(self.a(x))
        h = torch.relu(self.b(s))
        return [s, h], self.fc(h.mean(dim=(2, 3)))


def test_gem_interpolates_between_average_and_max() -> None:
    x = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(gem(x, 1.0), x.mean(dim=(2, 3)), atol=1e-5, rtol=1e-5)
    assert (gem(x, 3.0) > x.mean(dim=(2, 3))).all() and (gem(x, 3.0) <= x.amax(dim=(2, 3)) + 1e-6).all()


def test_blocks_are_normalised_before_concatenation() -> None:
    graph = RetrievalGraph(_Toy(), ["small", "head"], "avg", 3.0, flip=False)
    feats, logits = graph(torch.rand(3, 3, 8, 8))
    assert feats.shape == (3, 10) and logits.shape == (3, 1000)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(3))
    # each block carries half the squared norm, whatever its raw scale
    torch.testing.assert_close(feats[:, :4].norm(dim=1) ** 2, torch.full((3,), 0.5), atol=1e-5, rtol=0)


def test_flip_makes_features_mirror_invariant() -> None:
    graph = RetrievalGraph(_Toy(), ["head"], "gem", 3.0, flip=True)
    x = torch.rand(2, 3, 8, 8)
    feats, logits = graph(x)
    feats_m, logits_m = graph(torch.flip(x, dims=[3]))
    torch.testing.assert_close(feats, feats_m, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, logits_m, atol=1e-4, rtol=1e-4)
    plain, _ = RetrievalGraph(_Toy(), ["head"], "gem", 3.0, flip=False)(x)
    assert not torch.allclose(plain, feats, atol=1e-4)


def test_flip_is_the_mean_of_the_image_and_its_mirror() -> None:
    """flip=True gives the normalised sum of the unit features of the image and of its mirror image, and the
    mean of their logits (what ``raw_variants.py`` recombines from separate passes)."""
    torch.manual_seed(1)
    x = torch.rand(3, 3, 8, 8)
    plain = RetrievalGraph(_Toy(), ["small", "head"], "gem", 3.0, flip=False)
    a, la = plain(x)
    b, lb = plain(torch.flip(x, dims=[3]))
    feats, logits = RetrievalGraph(_Toy(), ["small", "head"], "gem", 3.0, flip=True)(x)
    torch.testing.assert_close(feats, torch.nn.functional.normalize(a + b, dim=1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, (la + lb) / 2, atol=1e-5, rtol=1e-5)
