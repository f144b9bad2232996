"""The fake encoder: weight-free, deterministic, and meaningful on synthetic coloured images."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from visrec.encoders import DEFAULT_ENCODER, ENCODERS, create_encoder
from visrec.encoders.fake import COLOURS
from visrec.errors import BadInput


def _solid(rgb: tuple[int, int, int], seed: int, size: tuple[int, int] = (40, 56)) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-25, 25, size=(*size, 3))
    return np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)


def test_zero_shot_colour_words_pick_the_right_images() -> None:
    enc = create_encoder("fake")
    names = ["red", "green", "blue", "yellow"]
    images = [_solid(COLOURS[n], seed=i) for i, n in enumerate(names)]
    prompts = enc.encode_texts([f"a photo of something {n}" for n in names])
    scores = enc.encode_images(images).joint @ prompts.T  # type: ignore[operator]
    assert list(scores.argmax(axis=1)) == [0, 1, 2, 3]


def test_similar_images_are_closer_than_different_ones() -> None:
    enc = create_encoder("fake", dim=128)
    v = enc.encode_images([_solid((200, 30, 30), 1), _solid((210, 40, 25), 2), _solid((20, 30, 200), 3)]).vectors
    assert v.shape == (3, 128)
    assert v[0] @ v[1] > 0.9 > v[0] @ v[2]


def test_other_text_gets_a_fixed_unit_vector() -> None:
    enc = create_encoder("fake")
    a, b, a2 = enc.encode_texts(["naruto", "sakura", "naruto"])
    np.testing.assert_array_equal(a, a2)
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-6 and abs(float(a @ b)) < 0.6


def test_bad_options_and_inputs_are_refused() -> None:
    with pytest.raises(BadInput):
        create_encoder("fake", dim=3)
    with pytest.raises(BadInput, match="known options"):
        create_encoder("fake", size=3)
    with pytest.raises(BadInput):
        create_encoder("fake").encode_texts("red")  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="unknown encoder"):
        create_encoder("no-such-encoder")


def test_registry_is_lazy_and_importing_it_loads_no_heavy_backend() -> None:
    assert DEFAULT_ENCODER == "efficientnet-lite0" and DEFAULT_ENCODER in ENCODERS
    import subprocess

    code = (
        "import sys, visrec.encoders as e; e.create_encoder('fake'); "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'transformers', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
