"""all-MiniLM-L6-v2 with ONNX Runtime vs the reference (transformers + mean pooling). Real weights: slow."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

from visrec.encoders import create_text_encoder
from visrec.encoders.text import MiniLMTextEncoder, load_tokenizer, tokenize
from visrec.errors import BadInput

pytestmark = pytest.mark.slow
TEXTS = [
    "a photo of a cat",
    "A picture of a small kitten.",
    "a photo of a truck",
    "Gaara of the Sand, drawn in anime style",
    "word " * 600,  # longer than 256 tokens: truncated, not an error
]


@pytest.fixture(scope="module")
def minilm(session_cache: Path) -> MiniLMTextEncoder:
    encoder = create_text_encoder()
    assert isinstance(encoder, MiniLMTextEncoder)
    return encoder


def test_vectors_match_transformers_mean_pooling(minilm: MiniLMTextEncoder, tmp_path: Path) -> None:
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers (dev extra) is not installed")
    import torch
    from transformers import AutoModel

    with zipfile.ZipFile(minilm.zip_path) as zf:
        zf.extract("config.json", tmp_path)
        zf.extract("model.safetensors", tmp_path)
    model = AutoModel.from_pretrained(str(tmp_path), local_files_only=True).eval()
    feeds = tokenize(load_tokenizer(minilm.zip_path), TEXTS)
    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state
    mask = torch.from_numpy(feeds["attention_mask"]).unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    assert feeds["input_ids"].shape[1] == 256
    np.testing.assert_allclose(minilm.encode(TEXTS), reference, atol=1e-4)


def test_similar_sentences_are_closer(minilm: MiniLMTextEncoder) -> None:
    v = minilm.encode(TEXTS)
    assert v.shape == (5, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_batching_does_not_change_vectors(minilm: MiniLMTextEncoder) -> None:
    small = MiniLMTextEncoder(batch_size=2)
    np.testing.assert_allclose(small.encode(TEXTS), minilm.encode(TEXTS), atol=1e-5)
    assert small.fingerprint == minilm.fingerprint


def test_bad_input(minilm: MiniLMTextEncoder) -> None:
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(BadInput, match="single string"):
        minilm.encode("a photo of a cat")  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        minilm.encode(["ok", 3])  # type: ignore[list-item]
