"""AnimateDiff-style "Vanilla" motion module: self-attention across the frames at every spatial position.

Names follow the official checkpoint: ``motion_modules.N.temporal_transformer.{norm, proj_in,
transformer_blocks.0.{attention_blocks.K.{to_q,to_k,to_v,to_out.0,pos_encoder.pe}, norms.K, ff, ff_norm},
proj_out}``. Reused from diffusers: ``Attention`` (SDPA via ``AttnProcessor2_0``), ``FeedForward`` (GEGLU) and
``SinusoidalPositionalEmbedding`` (buffer ``pe`` (1, max_len, C), sin on even / cos on odd channels, the same
values as the official ``PositionalEncoding``). The transformer and its block are written here: the
checkpoint's AnimateDiff names (``temporal_transformer``, ``attention_blocks.K``, ``norms.K``, ``ff_norm``, a
``pos_encoder`` per attention) are not those of diffusers' port (``AnimateDiffTransformer3D`` with
``BasicTransformerBlock``'s ``attn1``/``norm1``/... and one ``pos_embed`` per block), whose GroupNorm also
pools all frames where the official one normalises each frame.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from einops import rearrange
from torch import nn

from latentsync.models.attention import FEED_FORWARD_ACTIVATION
from latentsync.models.resnet import FrameGroupNorm
from latentsync.models.unet_config import MotionModuleConfig

# The official TemporalTransformer3DModel ignores norm_num_groups: its GroupNorm has 32 groups, eps 1e-6.
MOTION_NORM_GROUPS = 32
MOTION_NORM_EPS = 1e-6


class TemporalSelfAttention(Attention):
    """Self-attention over frames; the position code is added to its input only (not to the residual)."""

    def __init__(self, dim: int, heads: int, head_dim: int, max_frames: int | None) -> None:
        super().__init__(query_dim=dim, heads=heads, dim_head=head_dim)  # no q/k/v bias, to_out.0 with bias
        # Registered after to_out, as in the checkpoint: pe (1, max_frames, dim) float32, persistent.
        self.pos_encoder = SinusoidalPositionalEmbedding(dim, max_frames) if max_frames is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # x: ((b h w), f, c) - one sequence of frames per spatial position
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        # Straight to the SDPA processor: Attention.forward adds only the filtering of processor kwargs (an
        # inspect.signature call per attention, ~15 us), and there are none here.
        return self.processor(self, x)


class TemporalTransformerBlock(nn.Module):
    """Pre-LayerNorm temporal self-attentions (each with its own norm), then a GEGLU feed-forward."""

    # Not diffusers' BasicTransformerBlock (same maths): the checkpoint names attention_blocks.K, norms.K.

    def __init__(self, dim: int, heads: int, head_dim: int, cfg: MotionModuleConfig) -> None:
        super().__init__()
        max_frames = cfg.temporal_position_encoding_max_len if cfg.temporal_position_encoding else None
        n_attn = len(cfg.attention_block_types)
        self.attention_blocks = nn.ModuleList(
            [TemporalSelfAttention(dim, heads, head_dim, max_frames) for _ in range(n_attn)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(n_attn)])
        self.ff = FeedForward(dim, activation_fn=FEED_FORWARD_ACTIVATION)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: ((b h w), f, c)
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = x + attention(norm(x))
        return x + self.ff(self.ff_norm(x))


class TemporalTransformer(nn.Module):
    """Per-frame GN -> Linear in -> temporal blocks over frames -> Linear out, plus the input."""

    # Not diffusers' AnimateDiffTransformer3D: its GroupNorm pools all frames (here: per frame), names differ.

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
