"""VideoMAE-v2 ViT features for TREPA, the temporal-representation alignment loss (training/README §2).

``VisionTransformer`` equals the official ``videomaev2_finetune.VisionTransformer`` as LatentSync builds it
(``vit_giant_patch14_224``: patch 14, tubelet 2, 16 frames at 224 px -> 8x16x16 = 2048 tokens, embed 1408, depth 40,
16 heads, MLP 6144, fixed sinusoidal position table, mean pooling + ``fc_norm``); ``state_dict()`` equals
``vit_g_hybrid_pt_1200e_ssv2_ft.pth`` (526 tensors, ``head`` included though TREPA never uses it). Only
``forward_features`` exists: the classifier is never run. :func:`trepa_loss` is the official ``TREPALoss.__call__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

TREPA_SIZE = 224  # frames are bicubic-resized to the ViT's input size
LAYER_NORM_EPS = 1e-6
POSITION_BASE = 10000.0


@dataclass(frozen=True)
class VideoMAEConfig:
    """Official ``VisionTransformer`` arguments (defaults: ViT-g/14 as TREPA builds it)."""

    img_size: int = TREPA_SIZE
    patch_size: int = 14
    num_frames: int = 16  # all_frames
    tubelet_size: int = 2
    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_ratio: float = 48 / 11  # hidden = int(1408 * 48 / 11) = 6144
    num_classes: int = 174  # Something-Something-v2 fine-tune; the head is loaded, never used

    @property
    def num_tokens(self) -> int:
        grid = self.img_size // self.patch_size
        return (self.num_frames // self.tubelet_size) * grid * grid  # 8 * 16 * 16 = 2048

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


def tiny_videomae_config() -> VideoMAEConfig:
    """The tiny golden's ViT (``trepa_tiny_config.json``): same token geometry, embed 48, depth 2, 4 heads."""
    return VideoMAEConfig(embed_dim=48, depth=2, num_heads=4)


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """(1, n, dim) float32: angle p / 10000^(2 (j // 2) / dim), sin on even j, cos on odd j (float64 maths)."""
    positions = np.arange(num_positions, dtype=np.float64)[:, None]
    exponents = 2 * (np.arange(dim) // 2) / dim
    angles = positions / np.power(POSITION_BASE, exponents)[None, :]
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.from_numpy(angles).float()[None]


class PatchEmbed(nn.Module):
    def __init__(self, config: VideoMAEConfig) -> None:
        super().__init__()
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(3, config.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (b, 3, f, H, W) -> (b, t*h*w, d), (t, h, w) row-major


class Attention(nn.Module):
    """Self-attention with one qkv matrix and separate q / v biases (k has none)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = rearrange(qkv, "b n (three h e) -> three b h n e", three=3, h=self.heads)
        return self.proj(rearrange(F.scaled_dot_product_attention(q, k, v), "b h n e -> b n (h e)"))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block (no layer scale: init_values 0)."""

    def __init__(self, config: VideoMAEConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(config.embed_dim, config.num_heads)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(config.embed_dim, config.mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """VideoMAE-v2 ViT; ``forward_features`` (b, 3, 16, 224, 224) in [0, 1] -> (b, embed_dim)."""

    def __init__(self, config: VideoMAEConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.depth)])
        self.fc_norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(config.embed_dim, config.num_classes)
        # A plain attribute in the official code (not a buffer): not in the state_dict.
        self.pos_embed = sinusoid_table(config.num_tokens, config.embed_dim)
        self.gradient_checkpointing = False

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        expected = (3, self.config.num_frames, self.config.img_size, self.config.img_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"VideoMAE input must be (b, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        x = self.patch_embed(x)  # (b, 2048, d)
        x = x + self.pos_embed.to(device=x.device, dtype=x.dtype)
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.fc_norm(x.mean(1))  # (b, d)


def load_videomae(path: str | Path, config: VideoMAEConfig = VideoMAEConfig(), device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> VisionTransformer:
    """Strictly load an official checkpoint (the dict itself, or under "model" / "module", checked in that
    order as the reference does) or a safetensors file; frozen, eval mode."""
    from latentsync.models.weights_file import load_frozen, read_weights_file

    path = Path(path)
    state = read_weights_file(path, "VideoMAE checkpoint")
    for wrapper in ("model", "module"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    return load_frozen(VisionTransformer(config), state, path, "VideoMAE", device, dtype)


def trepa_inputs(videos: torch.Tensor, size: int = TREPA_SIZE) -> torch.Tensor:
    """(b, 3, f, h, w) in [-1, 1] -> (b, 3, f, size, size) in [0, 1]: bicubic resize, then clamp (no mean/std)."""
    b = videos.shape[0]
    frames = F.interpolate(rearrange(videos, "b c f h w -> (b f) c h w"), size=(size, size), mode="bicubic",
                           align_corners=False)
    frames = (frames / 2 + 0.5).clamp(0, 1)
    return rearrange(frames, "(b f) c h w -> b c f h w", b=b)


def trepa_loss(model: VisionTransformer, videos_fake: torch.Tensor, videos_real: torch.Tensor) -> torch.Tensor:
    """MSE between the L2-normalised VideoMAE features of two (b, 3, 16, h, w) videos in [-1, 1]."""
    size = model.config.img_size
    fake = F.normalize(model.forward_features(trepa_inputs(videos_fake, size)), dim=1)
    real = F.normalize(model.forward_features(trepa_inputs(videos_real, size)), dim=1)
    return F.mse_loss(fake, real)
