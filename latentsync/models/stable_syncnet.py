"""StableSyncNet: LatentSync's 16-frame audio-visual sync network (reference README §5.1, training/README §1).

Two ``DownEncoder2D`` towers map the lower half of 16 stacked face frames ``(b, 48, 128, 256)`` and a Wav2Lip mel
window ``(b, 1, 80, 52)`` to L2-normalised embeddings; their cosine similarity (in [0, 1]: both end in a ReLU) is the
probability that audio and mouth are in sync. ``state_dict()`` names, shapes and order equal the official
``stable_syncnet.pt`` (``{"state_dict": ...}``).

Facts not in the official YAML, taken from its code: every stage is ONE ResNet block (``layers_per_block`` unused),
attention blocks take their own index in ``down_blocks``, GroupNorms have 32 groups and eps 1e-6, the downsampling
is a zero pad then a 3x3 conv with stride = factor and no padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from torch import nn
from torch.utils.checkpoint import checkpoint

NORM_GROUPS = 32  # official constructor default, never read from the YAML
NORM_EPS = 1e-6
ATTENTION_HEADS = 8  # AttentionBlock2D: 8 heads of C // 8
FEED_FORWARD_ACTIVATION = "geglu"  # diffusers FeedForward(C): C -> 8C, split, value * gelu(gate), 4C -> C

Factor = int | tuple[int, int]  # (height, width) stride of a stage's downsampling conv; 1 = none


@dataclass(frozen=True)
class EncoderConfig:
    """One ``DownEncoder2D`` tower: a stage per entry of ``block_out_channels``."""

    in_channels: int
    block_out_channels: tuple[int, ...]
    downsample_factors: tuple[Factor, ...]  # per stage; (h, w) tuples allowed
    attn_blocks: tuple[int, ...]  # 1: an AttentionBlock2D follows the stage's ResNet block
    dropout: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.block_out_channels)
        if (len(self.downsample_factors), len(self.attn_blocks)) != (n, n):
            raise ValueError(f"EncoderConfig: block_out_channels, downsample_factors and attn_blocks need equal "
                             f"lengths, got {n}, {len(self.downsample_factors)}, {len(self.attn_blocks)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        values = dict(values)
        values.pop("layers_per_block", None)  # stored by the official YAML, unused by its code
        factors = tuple(tuple(f) if isinstance(f, (list, tuple)) else int(f) for f in values["downsample_factors"])
        return cls(in_channels=int(values["in_channels"]), block_out_channels=tuple(values["block_out_channels"]),
                   downsample_factors=factors, attn_blocks=tuple(int(a) for a in values["attn_blocks"]),
                   dropout=float(values.get("dropout", 0.0)))


@dataclass(frozen=True)
class StableSyncNetConfig:
    """The official ``model:`` section of ``configs/syncnet/*.yaml``."""

    audio_encoder: EncoderConfig
    visual_encoder: EncoderConfig
    # Not part of the model section: how the training code feeds the visual tower.
    lower_half: bool = True  # only the lower half of each frame is seen
    pixel_space: bool = True  # False: VAE latents (syncnet_16_latent)
    num_frames: int = 16
    resolution: int = 256  # face size the visual tower is built for (lower half: resolution/2 x resolution)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StableSyncNetConfig:
        values = dict(values)
        return cls(audio_encoder=EncoderConfig.from_dict(values.pop("audio_encoder")),
                   visual_encoder=EncoderConfig.from_dict(values.pop("visual_encoder")), **values)


# Shared by every released config: mel (1, 80, 52) -> 1x1 (80x52 -> 40x52 -> 20x26 -> 10x13 -> 10x13 -> 5x6 -> 2x3 -> 1x1).
_PIXEL_AUDIO = {"in_channels": 1, "block_out_channels": (32, 64, 128, 256, 512, 1024, 2048),
                "downsample_factors": ((2, 1), 2, 2, 1, 2, 2, (2, 3))}
_PIXEL_VISUAL = {"in_channels": 48, "block_out_channels": (64, 128, 256, 256, 512, 1024, 2048, 2048),
                 "downsample_factors": ((1, 2), 2, 2, 2, 2, 2, 2, 2)}  # 128x256 -> 128x128 -> ... -> 1x1


def syncnet_16_pixel_attn() -> StableSyncNetConfig:
    """``configs/syncnet/syncnet_16_pixel_attn.yaml``: the released ``stable_syncnet.pt`` (401,306,080 params)."""
    return StableSyncNetConfig(EncoderConfig(**_PIXEL_AUDIO, attn_blocks=(0, 0, 0, 1, 1, 0, 0)),
                               EncoderConfig(**_PIXEL_VISUAL, attn_blocks=(0, 0, 0, 0, 1, 1, 0, 0)))


def syncnet_16_pixel() -> StableSyncNetConfig:
    """``configs/syncnet/syncnet_16_pixel.yaml``: no attention (371,766,496 params)."""
    return StableSyncNetConfig(EncoderConfig(**_PIXEL_AUDIO, attn_blocks=(0,) * 7),
                               EncoderConfig(**_PIXEL_VISUAL, attn_blocks=(0,) * 8))


def syncnet_16_latent() -> StableSyncNetConfig:
    """``configs/syncnet/syncnet_16_latent.yaml``: 16 frames x 4 VAE latent channels at 32x32 (65,544,416 params).

    The weight shapes equal the manifest; the stride values (which no weight records) are chosen so both towers
    end at 1x1: audio 80x52 -> 40x52 -> 20x26 -> 10x13 -> 5x6 -> 2x3 -> 1x1, visual 32 -> 16 -> 8 -> 4 -> 4 -> 2 -> 1.
    """
    channels = (32, 64, 128, 256, 512, 1024)
    audio = EncoderConfig(1, channels, ((2, 1), 2, 2, 2, 2, (2, 3)), (0,) * 6)
    visual = EncoderConfig(64, (64, 128, 256, 256, 512, 1024), (2, 2, 2, 1, 2, 2), (0,) * 6)
    return StableSyncNetConfig(audio, visual, lower_half=False, pixel_space=False)


PRESETS = {"syncnet_16_pixel_attn": syncnet_16_pixel_attn, "syncnet_16_pixel": syncnet_16_pixel,
           "syncnet_16_latent": syncnet_16_latent}


def _downsample_padding(factor: Factor) -> tuple[int, int, int, int]:
    """F.pad order (w_left, w_right, h_top, h_bottom) of the official ResnetBlock2D."""
    if isinstance(factor, tuple) and factor[0] == 1:
        return (0, 1, 1, 1)  # (1, s): stride only along the width
    if isinstance(factor, tuple) and factor[1] == 1:
        return (1, 1, 0, 1)  # (s, 1): stride only along the height
    return (0, 1, 0, 1)


class ResnetBlock2D(nn.Module):
    """GN -> SiLU -> conv1 -> GN -> SiLU -> dropout -> conv2, + shortcut; then optional pad + strided conv."""

    def __init__(self, in_channels: int, out_channels: int, factor: Factor, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(NORM_GROUPS, in_channels, eps=NORM_EPS)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(NORM_GROUPS, out_channels, eps=NORM_EPS)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.factor = factor
        if factor != 1:
            self.downsample_conv = nn.Conv2d(out_channels, out_channels, 3, stride=factor, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        h = h + (self.conv_shortcut(x) if self.conv_shortcut is not None else x)  # (b, c_out, H, W)
        if self.factor != 1:
            h = self.downsample_conv(F.pad(h, _downsample_padding(self.factor)))  # (b, c_out, H/fh, W/fw)
        return h


class SelfAttention(nn.Module):
    """Multi-head self-attention with biased q/k/v/out projections (official ``Attention``)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)  # (b, heads, n, c/heads)

        h = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))
        return self.to_out[0](h.transpose(1, 2).reshape(b, n, c))


class AttentionBlock2D(nn.Module):
    """GN -> 1x1 conv -> tokens -> (+ attn(LN)) -> (+ GEGLU FF(LN)) -> 1x1 conv -> + input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # Registration order = official state_dict order: norm1, norm2, norm3, ff, conv_in, conv_out, attn.
        self.norm1 = nn.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS)
        self.norm2 = nn.LayerNorm(channels)
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, activation_fn=FEED_FORWARD_ACTIVATION)
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.conv_out = nn.Conv2d(channels, channels, 1)
        self.attn = SelfAttention(channels, ATTENTION_HEADS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = self.conv_in(self.norm1(x)).flatten(2).transpose(1, 2)  # (b, h*w, c)
        h = self.attn(self.norm2(h)) + h
        h = self.ff(self.norm3(h)) + h
        h = h.transpose(1, 2).reshape(b, c, height, width)
        return self.conv_out(h) + x


class DownEncoder2D(nn.Module):
    """conv_in -> [ResNet (+ attention)] per stage, in one ModuleList -> GN -> ReLU; ends at 1x1."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        channels = config.block_out_channels
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        for i, (out_channels, factor, attn) in enumerate(
                zip(channels, config.downsample_factors, config.attn_blocks)):
            self.down_blocks.append(ResnetBlock2D(channels[max(i - 1, 0)], out_channels, factor, config.dropout))
            if attn:
                self.down_blocks.append(AttentionBlock2D(out_channels))
        self.norm_out = nn.GroupNorm(NORM_GROUPS, channels[-1], eps=NORM_EPS)
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return F.relu(self.norm_out(x))  # (b, c_last, 1, 1)


class StableSyncNet(nn.Module):
    """(frames (b, 3f, H, W), mel (b, 1, 80, 52)) -> unit embeddings (b, C), (b, C)."""

    def __init__(self, config: StableSyncNetConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_encoder = DownEncoder2D(config.audio_encoder)
        self.visual_encoder = DownEncoder2D(config.visual_encoder)
        self.eval()  # the official constructor leaves the net in eval mode

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.audio_encoder.gradient_checkpointing = enabled
        self.visual_encoder.gradient_checkpointing = enabled

    def forward(self, frames: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vision = self.visual_encoder(frames)
        audio = self.audio_encoder(mel)
        if vision.shape[2:] != (1, 1) or audio.shape[2:] != (1, 1):
            raise ValueError(f"StableSyncNet towers must end at 1x1; got visual {tuple(vision.shape[2:])} and "
                             f"audio {tuple(audio.shape[2:])} for inputs {tuple(frames.shape)}, {tuple(mel.shape)}")
        return F.normalize(vision.flatten(1), dim=1), F.normalize(audio.flatten(1), dim=1)  # (b, C) each


def sync_probability(vision_embeds: torch.Tensor, audio_embeds: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of unit embeddings, (b,) in [0, 1]: the net's "in sync" probability."""
    return F.cosine_similarity(vision_embeds, audio_embeds, dim=1)


def load_stable_syncnet(path, config: StableSyncNetConfig, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> StableSyncNet:
    """Build the net for ``config`` and fill it strictly from an official ``{"state_dict"}`` file (or a plain
    state dict / safetensors); frozen, eval mode."""
    from pathlib import Path

    from latentsync.models.weights_file import load_frozen, read_weights_file

    path = Path(path)
    state = read_weights_file(path, "StableSyncNet checkpoint")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return load_frozen(StableSyncNet(config), state, path, "StableSyncNet", device, dtype)


__all__ = [
    "PRESETS",
    "EncoderConfig",
    "StableSyncNet",
    "StableSyncNetConfig",
    "load_stable_syncnet",
    "sync_probability",
    "syncnet_16_latent",
    "syncnet_16_pixel",
    "syncnet_16_pixel_attn",
]
