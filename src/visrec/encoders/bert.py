"""A minimal BERT encoder in torch (inference only), used once to export all-MiniLM-L6-v2 to ONNX.

Module and parameter names follow the Hugging Face ``BertModel`` state dict, so a sentence-transformers
``model.safetensors`` loads with ``strict=True`` and ``transformers`` is not needed at run time. The forward
pass ends with the sentence-transformers recipe: mean pooling over the attention mask, then L2
normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

_IGNORED_KEYS = ("pooler.", "embeddings.position_ids")


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention = nn.ModuleDict(
            {
                "self": nn.ModuleDict({n: nn.Linear(hidden, hidden) for n in ("query", "key", "value")}),
                "output": nn.ModuleDict({"dense": nn.Linear(hidden, hidden), "LayerNorm": nn.LayerNorm(hidden, eps)}),
            }
        )
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(hidden, intermediate)})
        self.output = nn.ModuleDict({"dense": nn.Linear(intermediate, hidden), "LayerNorm": nn.LayerNorm(hidden, eps)})

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        return x.reshape(b, t, self.heads, h // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        att = cast(nn.ModuleDict, self.attention["self"])
        q, k, v = (self._split(att[n](x)) for n in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        ctx = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(x.shape)
        out = cast(nn.ModuleDict, self.attention["output"])
        x = out["LayerNorm"](out["dense"](ctx) + x)
        hidden = F.gelu(self.intermediate["dense"](x))
        return self.output["LayerNorm"](self.output["dense"](hidden) + x)


class SentenceBert(nn.Module):
    """BERT + mean pooling + L2 normalisation.

    ``forward(input_ids, attention_mask, token_type_ids)``: three ``(batch, tokens)`` int64 tensors ->
    ``(batch, hidden)`` float32 unit vectors.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        hidden, eps = int(config["hidden_size"]), float(config["layer_norm_eps"])
        self.embeddings = nn.ModuleDict(
            {
                "word_embeddings": nn.Embedding(int(config["vocab_size"]), hidden),
                "position_embeddings": nn.Embedding(int(config["max_position_embeddings"]), hidden),
                "token_type_embeddings": nn.Embedding(int(config["type_vocab_size"]), hidden),
                "LayerNorm": nn.LayerNorm(hidden, eps),
            }
        )
        layers = [
            _Layer(hidden, int(config["num_attention_heads"]), int(config["intermediate_size"]), eps)
            for _ in range(int(config["num_hidden_layers"]))
        ]
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(layers)})

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        emb = self.embeddings
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = emb["word_embeddings"](input_ids) + emb["position_embeddings"](positions)
        x = emb["LayerNorm"](x + emb["token_type_embeddings"](token_type_ids))
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask)[:, None, None, :] * torch.finfo(x.dtype).min
        for layer in cast(nn.ModuleList, self.encoder["layer"]):
            x = layer(x, bias)
        weights = mask.unsqueeze(-1)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, dim=1)

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a Hugging Face ``BertModel`` state dict (the pooler head is not used and is skipped)."""
        kept = {k: v for k, v in state.items() if not k.startswith(_IGNORED_KEYS)}
        self.load_state_dict(kept, strict=True)
