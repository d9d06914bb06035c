"""Multi-head attention and the per-frame spatial transformer (self-attention + audio cross-attention).

Parameter names equal the official checkpoint's (``to_q/to_k/to_v/to_out.0``,
``norm1/attn1/norm2/attn2/ff/norm3``). The feed-forward is diffusers' ``FeedForward`` (GEGLU; names
``ff.net.0.proj`` / ``ff.net.2`` and maths match). Attention is written here rather than taken from
diffusers' ``Attention``: the temporal variant must register its positional encoding after ``to_out``
(checkpoint order) and add it before the projections, and one 20-line class with
``scaled_dot_product_attention`` serves spatial, audio and temporal attention alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from einops import rearrange
from torch import nn

from latentsync.models.resnet import FrameGroupNorm

# The spatial transformer's own GroupNorm eps (hard-coded in the official Transformer3DModel).
SPATIAL_NORM_EPS = 1e-6


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention: q/k/v projections without bias, output projection with bias."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None) -> None:
        super().__init__()
        inner_dim = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner_dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim)])  # index 0: the checkpoint's to_out.0

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x: (n, l, query_dim); context: (n, m, context_dim) or None for self-attention
        context = x if context is None else context
        q, k, v = (rearrange(t, "n l (h d) -> n h l d", h=self.heads)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)  # (n, heads, l, d), scale 1/sqrt(d), no mask
        return self.to_out[0](rearrange(out, "n h l d -> n l (h d)"))


class SpatialTransformerBlock(nn.Module):
    """Pre-LayerNorm block on the h*w tokens of one frame: self-attn, optional audio cross-attn, GEGLU FF."""

    def __init__(self, dim: int, heads: int, audio_dim: int | None) -> None:
        super().__init__()
        head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = MultiHeadAttention(dim, heads, head_dim)
        # add_audio_layer: the only place audio enters the net
        self.norm2 = nn.LayerNorm(dim) if audio_dim is not None else None
        self.attn2 = MultiHeadAttention(dim, heads, head_dim, audio_dim) if audio_dim is not None else None
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        # x: ((b f), h*w, c); audio: ((b f), tokens, audio_dim) - each frame sees only its own audio window
        x = x + self.attn1(self.norm1(x))
        if audio is not None and self.attn2 is not None:
            x = x + self.attn2(self.norm2(x), audio)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Per-frame GN -> 1x1 conv -> transformer block over h*w tokens -> 1x1 conv, plus the input."""

    def __init__(self, channels: int, heads: int, groups: int, audio_dim: int | None) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} attention heads")
        self.norm = FrameGroupNorm(groups, channels, eps=SPATIAL_NORM_EPS, affine=True)
        self.proj_in = nn.Conv2d(channels, channels, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([SpatialTransformerBlock(channels, heads, audio_dim)])
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        # x: (b, c, f, h, w); audio: ((b f), tokens, audio_dim) or None
        b, _, _, h, w = x.shape
        tokens = self.proj_in(rearrange(self.norm(x), "b c f h w -> (b f) c h w"))
        tokens = rearrange(tokens, "n c h w -> n (h w) c")  # n = b*f
        for block in self.transformer_blocks:
            tokens = block(tokens, audio)
        out = self.proj_out(rearrange(tokens, "n (h w) c -> n c h w", h=h, w=w))
        return x + rearrange(out, "(b f) c h w -> b c f h w", b=b)
