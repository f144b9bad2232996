"""TinyViT-5M, the image encoder of MobileSAM, for inference (torch; imported only to export it to ONNX).

Ported from MobileSAM's ``mobile_sam/modeling/tiny_vit_sam.py`` (Copyright (c) 2022 Microsoft, TinyViT,
adapted from LeViT and Swin Transformer; MobileSAM, Copyright (c) 2023 Chaoning Zhang et al.; both under the
Apache License 2.0, http://www.apache.org/licenses/LICENSE-2.0). Changes: inference only (no drop path,
gradient checkpointing, learning-rate decay or classification head), no ``timm``/torchvision imports, the
stride-1 patch merging and the output grid passed in instead of inferred from channel counts, type hints.
Module and parameter names are the original's, so the official checkpoint loads strictly.

Shapes for the MobileSAM configuration: RGB ``(b, 3, 1024, 1024)`` normalised image -> patch embedding to
``(b, 64, 256, 256)`` -> an MBConv stage and three attention stages (windows 7 / 14 / 7) at 128, 64 and 64
tokens a side -> a neck to the ``(b, 256, 64, 64)`` embedding SAM's prompt decoder expects.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TinyVitArch:
    """The shape of a TinyViT image encoder (defaults: MobileSAM's TinyViT-5M at 1024 px)."""

    img_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256


class ConvBN(nn.Sequential):
    """Convolution without bias followed by batch norm (names ``c`` and ``bn`` as in the checkpoint)."""

    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU."""

    def __init__(self, chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(chans * expand_ratio)
        self.conv1 = ConvBN(chans, hidden)
        self.conv2 = ConvBN(hidden, hidden, ks=3, pad=1, groups=hidden)
        self.conv3 = ConvBN(hidden, chans)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return self.act(x + y)


class PatchMerging(nn.Module):
    """Tokens ``(b, h*w, c)`` (or a ``(b, c, h, w)`` map) to ``(b, h'*w', out)`` through 1x1, strided
    depthwise 3x3 and 1x1 convolutions (stride 2, or 1 before MobileSAM's last stage)."""

    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.resolution
            x = x.view(len(x), h, w, -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention over one window with a learned bias per relative offset (LeViT style)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.scale = key_dim**-0.5
        self.d = key_dim  # attn_ratio 1: values are as wide as keys
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, num_heads * (2 * key_dim + self.d))
        self.proj = nn.Linear(num_heads * self.d, dim)
        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets: dict[tuple[int, int], int] = {}
        idxs = [offsets.setdefault((abs(p[0] - q[0]), abs(p[1] - q[1])), len(offsets)) for p in points for q in points]
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(len(points), len(points)), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split([self.key_dim, self.key_dim, self.d], dim=3))
        idxs: torch.Tensor = self.attention_bias_idxs  # type: ignore[assignment]
        bias = self.attention_biases[:, idxs]
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (zero-padded to whole windows), a depthwise local convolution, then the MLP."""

    def __init__(self, dim: int, resolution: tuple[int, int], heads: int, window: int, arch: TinyVitArch) -> None:
        super().__init__()
        self.resolution, self.window = resolution, window
        self.attn = Attention(dim, dim // heads, heads, (window, window))
        self.mlp = Mlp(dim, int(dim * arch.mlp_ratio))
        k = arch.local_conv_size
        self.local_conv = ConvBN(dim, dim, ks=k, pad=k // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, length, c = x.shape
        ws = self.window
        if h == ws and w == ws:
            y = self.attn(x)
        else:
            pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
            y = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            y = y.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
            y = self.attn(y)
            y = y.view(b, ph // ws, pw // ws, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            y = y[:, :h, :w].reshape(b, length, c)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, length).transpose(1, 2)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """The first stage: MBConv blocks on the feature map, then patch merging."""

    def __init__(self, dim: int, depth: int, merge: PatchMerging, expand_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio) for _ in range(depth)])
        self.downsample = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """An attention stage: TinyViT blocks on tokens, then patch merging (none after the last stage)."""

    def __init__(self, blocks: list[TinyViTBlock], merge: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``(b, c, h, w)`` map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + self.eps)) + self.bias[:, None, None]


class TinyViT(nn.Module):
    """MobileSAM's image encoder: ``(b, 3, s, s)`` normalised RGB -> ``(b, out_chans, s/16, s/16)``."""

    def __init__(self, arch: TinyVitArch | None = None) -> None:
        super().__init__()
        a = arch or TinyVitArch()
        self.img_size = a.img_size
        d = a.embed_dims
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(ConvBN(3, d[0] // 2, 3, 2, 1), nn.GELU(), ConvBN(d[0] // 2, d[0], 3, 2, 1))
        side = a.img_size // 4
        # stage i works at side / 2**i; the merge into the last stage keeps the resolution (stride 1)
        res = [side // 2 ** min(i, len(d) - 2) for i in range(len(d))]
        merges = [
            PatchMerging((res[i], res[i]), d[i], d[i + 1], 1 if i == len(d) - 2 else 2) for i in range(len(d) - 1)
        ]
        layers: list[nn.Module] = [ConvLayer(d[0], a.depths[0], merges[0], a.mbconv_expand_ratio)]
        for i in range(1, len(d)):
            blocks = [
                TinyViTBlock(d[i], (res[i], res[i]), a.num_heads[i], a.window_sizes[i], a) for _ in range(a.depths[i])
            ]
            layers.append(BasicLayer(blocks, merges[i] if i < len(merges) else None))
        self.layers = nn.ModuleList(layers)
        self.grid = res[-1]
        self.neck = nn.Sequential(
            nn.Conv2d(d[-1], a.out_chans, 1, bias=False),
            LayerNorm2d(a.out_chans),
            nn.Conv2d(a.out_chans, a.out_chans, 3, padding=1, bias=False),
            LayerNorm2d(a.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.seq(x)  # type: ignore[operator]
        for layer in self.layers:
            x = layer(x)
        x = x.view(len(x), self.grid, self.grid, -1).permute(0, 3, 1, 2)
        return self.neck(x)
