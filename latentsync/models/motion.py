"""AnimateDiff-style "Vanilla" motion module: self-attention across the frames at every spatial position.

Names follow the official checkpoint: ``motion_modules.N.temporal_transformer.{norm, proj_in,
transformer_blocks.0.{attention_blocks.K.{to_q,to_k,to_v,to_out.0,pos_encoder.pe}, norms.K, ff, ff_norm},
proj_out}``.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from einops import rearrange
from torch import nn

from latentsync.models.attention import MultiHeadAttention
from latentsync.models.resnet import FrameGroupNorm
from latentsync.models.unet_config import MotionModuleConfig

# The official TemporalTransformer3DModel ignores norm_num_groups: its GroupNorm has 32 groups, eps 1e-6.
MOTION_NORM_GROUPS = 32
MOTION_NORM_EPS = 1e-6
# Base of the sinusoidal position code (as in "Attention is all you need").
POSITION_ENCODING_BASE = 10_000.0


class SinusoidalPositionalEncoding(nn.Module):
    """Adds ``pe[:, :f]`` to (n, f, c) sequences; ``pe`` is a persistent buffer (it is in the checkpoint)."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        # pe[0, t, 2i] = sin(t * w_i), pe[0, t, 2i+1] = cos(t * w_i), w_i = 10000^(-2i/dim); float32 like the
        # official buffer.
        position = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
        exponents = torch.arange(0, dim, 2, dtype=torch.float32)  # 2i
        freqs = torch.exp(exponents * (-math.log(POSITION_ENCODING_BASE) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * freqs)
        pe[0, :, 1::2] = torch.cos(position * freqs)
        self.register_buffer("pe", pe, persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]]  # x: (n, f, c)


class TemporalSelfAttention(MultiHeadAttention):
    """Self-attention over frames; the position code is added to its input only (not to the residual)."""

    def __init__(self, dim: int, heads: int, head_dim: int, max_frames: int | None) -> None:
        super().__init__(dim, heads, head_dim)
        self.pos_encoder = SinusoidalPositionalEncoding(dim, max_frames) if max_frames is not None else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x: ((b h w), f, c) - one sequence of frames per spatial position
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        return super().forward(x)


class TemporalTransformerBlock(nn.Module):
    """Pre-LayerNorm temporal self-attentions (each with its own norm), then a GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, head_dim: int, cfg: MotionModuleConfig) -> None:
        super().__init__()
        max_frames = cfg.temporal_position_encoding_max_len if cfg.temporal_position_encoding else None
        n_attn = len(cfg.attention_block_types)
        self.attention_blocks = nn.ModuleList(
            [TemporalSelfAttention(dim, heads, head_dim, max_frames) for _ in range(n_attn)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(n_attn)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: ((b h w), f, c)
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = x + attention(norm(x))
        return x + self.ff(self.ff_norm(x))


class TemporalTransformer(nn.Module):
    """Per-frame GN -> Linear in -> temporal blocks over frames -> Linear out, plus the input."""

    def __init__(self, channels: int, cfg: MotionModuleConfig) -> None:
        super().__init__()
        heads = cfg.num_attention_heads
        head_dim = channels // heads // cfg.temporal_attention_dim_div
        inner_dim = heads * head_dim
        self.norm = FrameGroupNorm(MOTION_NORM_GROUPS, channels, eps=MOTION_NORM_EPS, affine=True)
        self.proj_in = nn.Linear(channels, inner_dim)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(inner_dim, heads, head_dim, cfg)
                                                 for _ in range(cfg.num_transformer_block)])
        self.proj_out = nn.Linear(inner_dim, channels)
        if cfg.zero_initialize:  # a fresh motion module is an identity
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (b, c, f, h, w)
        b, _, _, h, w = x.shape
        seq = self.proj_in(rearrange(self.norm(x), "b c f h w -> (b h w) f c"))
        for block in self.transformer_blocks:
            seq = block(seq)
        out = rearrange(self.proj_out(seq), "(b h w) f c -> b c f h w", b=b, h=h, w=w)
        return x + out


class MotionModule(nn.Module):
    """The official VanillaTemporalModule: a wrapper kept for the checkpoint's ``temporal_transformer.*``."""

    def __init__(self, channels: int, cfg: MotionModuleConfig) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_transformer(x)  # (b, c, f, h, w)
