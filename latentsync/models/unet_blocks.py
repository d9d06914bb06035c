"""The down, mid and up blocks of the LatentSync UNet (one resolution level each).

A level is ``layers`` x (ResNet -> spatial transformer (if "CrossAttn") -> motion module (if enabled)) plus a
resampler. Attribute order (attentions, resnets, motion_modules, resamplers) follows the official
state_dict order (loading matches names, so order is cosmetic).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from latentsync.models.attention import SpatialTransformer
from latentsync.models.motion import MotionModule
from latentsync.models.resnet import Downsample3D, ResnetBlock3D, Upsample3D
from latentsync.models.unet_config import UNetConfig


def _run(block: nn.Module, fn: Callable[..., torch.Tensor], *args: torch.Tensor | None) -> torch.Tensor:
    """``fn(*args)``, under activation checkpointing when ``block.gradient_checkpointing`` is set and gradients are
    being recorded (training); the values are identical either way."""
    if getattr(block, "gradient_checkpointing", False) and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def _audio_dim(cfg: UNetConfig) -> int | None:
    return cfg.cross_attention_dim if cfg.add_audio_layer else None


def _resnet(cfg: UNetConfig, in_channels: int, out_channels: int, output_scale_factor: float = 1.0
            ) -> ResnetBlock3D:
    return ResnetBlock3D(in_channels, out_channels, 4 * cfg.block_out_channels[0], groups=cfg.norm_num_groups,
                         eps=cfg.norm_eps, per_frame_norm=cfg.use_inflated_groupnorm,
                         output_scale_factor=output_scale_factor)


def _transformers(cfg: UNetConfig, channels: int, n: int) -> nn.ModuleList:
    heads, audio_dim = cfg.attention_head_dim, _audio_dim(cfg)
    groups = cfg.norm_num_groups
    return nn.ModuleList([SpatialTransformer(channels, heads, groups, audio_dim) for _ in range(n)])


class DownBlock3D(nn.Module):
    """``layers`` x (ResNet -> [transformer] -> [motion module]), then an optional stride-2 conv."""

    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int, *, with_attention: bool,
                 with_motion: bool, add_downsample: bool) -> None:
        super().__init__()
        n = cfg.layers_per_block
        self.attentions = _transformers(cfg, out_channels, n) if with_attention else nn.ModuleList()
        self.resnets = nn.ModuleList(
            [_resnet(cfg, in_channels if i == 0 else out_channels, out_channels) for i in range(n)])
        self.motion_modules = nn.ModuleList(
            [MotionModule(out_channels, cfg.motion_module_kwargs) for _ in range(n)] if with_motion else [])
        self.downsamplers = nn.ModuleList(
            [Downsample3D(out_channels, cfg.downsample_padding)] if add_downsample else [])
        self.gradient_checkpointing = False  # set by LatentSyncUNet.enable_gradient_checkpointing (training)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, audio: torch.Tensor | None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # x: (b, c_in, f, h, w) -> (b, c_out, f, h', w'); skips: every layer output and the downsampled x
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = _run(self, resnet, x, temb)
            if self.attentions:
                x = _run(self, self.attentions[i], x, audio)
            if self.motion_modules:
                x = _run(self, self.motion_modules[i], x)
            skips.append(x)
        for downsampler in self.downsamplers:
            x = downsampler(x)
            skips.append(x)
        return x, skips


class MidBlock3D(nn.Module):
    """ResNet -> transformer -> ResNet at the lowest resolution (no motion module in any released config)."""

    def __init__(self, cfg: UNetConfig, channels: int) -> None:
        super().__init__()
        self.attentions = _transformers(cfg, channels, 1)
        self.resnets = nn.ModuleList(
            [_resnet(cfg, channels, channels, cfg.mid_block_scale_factor) for _ in range(2)])
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, temb: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        x = _run(self, self.resnets[0], x, temb)  # (b, c, f, h, w) throughout
        for attention, resnet in zip(self.attentions, self.resnets[1:]):
            x = _run(self, resnet, _run(self, attention, x, audio), temb)
        return x


class UpBlock3D(nn.Module):
    """``layers + 1`` x (concat skip -> ResNet -> [transformer] -> [motion module]), then optional 2x up."""

    def __init__(self, cfg: UNetConfig, prev_channels: int, out_channels: int, skip_in_channels: int, *,
                 with_attention: bool, with_motion: bool, add_upsample: bool) -> None:
        super().__init__()
        n = cfg.layers_per_block + 1
        # Layer i concatenates the matching down layer's skip: the last one has the level's input width.
        skip_channels = [out_channels] * (n - 1) + [skip_in_channels]
        self.attentions = _transformers(cfg, out_channels, n) if with_attention else nn.ModuleList()
        self.resnets = nn.ModuleList(
            [_resnet(cfg, (prev_channels if i == 0 else out_channels) + skip_channels[i], out_channels)
             for i in range(n)])
        self.motion_modules = nn.ModuleList(
            [MotionModule(out_channels, cfg.motion_module_kwargs) for _ in range(n)] if with_motion else [])
        self.upsamplers = nn.ModuleList([Upsample3D(out_channels)] if add_upsample else [])
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor,
                audio: torch.Tensor | None, upsample_size: tuple[int, int] | None = None) -> torch.Tensor:
        # x: (b, c_prev, f, h, w); skips: this level's skip tensors in production order, consumed last-first
        for i, resnet in enumerate(self.resnets):
            x = _run(self, resnet, torch.cat([x, skips[-1 - i]], dim=1), temb)  # (b, c_out, f, h, w)
            if self.attentions:
                x = _run(self, self.attentions[i], x, audio)
            if self.motion_modules:
                x = _run(self, self.motion_modules[i], x)
        for upsampler in self.upsamplers:
            x = upsampler(x, upsample_size)  # (b, c_out, f, 2h, 2w)
        return x
