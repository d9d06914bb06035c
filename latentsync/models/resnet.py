"""Video ("inflated") convolutions, GroupNorms and the ResNet / resampling blocks of the LatentSync UNet.

All tensors here are videos ``(b, c, f, h, w)``. 2-D layers are applied frame by frame by folding frames into
the batch; their weights stay 4-D ``(out, in, kh, kw)`` as in the official checkpoint. The resamplers are
diffusers' ``Downsample2D`` / ``Upsample2D`` (same names and maths) on the folded frames. The ResNet block is
written out: its GroupNorms must see all frames of a call jointly (5-D), while diffusers' ``ResnetBlock2D``
needs 4-D input throughout (Conv2d, ``temb[:, :, None, None]``), so folding frames would make them per-frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D
from einops import rearrange
from torch import nn

# Downsample2D's name for a layer whose conv is registered only as ``conv`` (its default "conv" would also
# register the same module as ``Conv2d_0``, a second state_dict name).
DOWNSAMPLE_CONV_NAME = "op"


def frame_by_frame(fn: Callable[..., torch.Tensor], x: torch.Tensor, *args: Any, **kwargs: Any
                   ) -> torch.Tensor:
    """A 4-D (image) layer on every frame: (b, c, f, h, w) -> ((b f), c, h, w) -> fn -> (b, c', f, h', w')."""
    b = x.shape[0]
    y = fn(rearrange(x, "b c f h w -> (b f) c h w"), *args, **kwargs)
    return rearrange(y, "(b f) c h w -> b c f h w", b=b)


class FrameConv2d(nn.Conv2d):
    """A Conv2d applied to every frame of a video (official name: InflatedConv3d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frame_by_frame(super().forward, x)


class FrameGroupNorm(nn.GroupNorm):
    """A GroupNorm with statistics per frame (``nn.GroupNorm`` on a 5-D tensor would pool all frames)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frame_by_frame(super().forward, x)


def video_group_norm(groups: int, channels: int, eps: float, per_frame: bool) -> nn.GroupNorm:
    """The ResNet / conv_norm_out norm: cross-frame (official default) unless ``per_frame``.

    Cross-frame is plain ``nn.GroupNorm`` on (b, c, f, h, w): statistics over the group's channels x all
    frames x h x w, so the frames of one UNet call influence each other (reference README §3.2).
    """
    norm_cls = FrameGroupNorm if per_frame else nn.GroupNorm
    return norm_cls(groups, channels, eps=eps, affine=True)


class ResnetBlock3D(nn.Module):
    """GN -> SiLU -> conv1 -> (+ time embedding) -> GN -> SiLU -> conv2, plus a (1x1 conv) shortcut."""

    # Not diffusers' ResnetBlock2D (same names): it runs on one 4-D tensor, these GroupNorms need all frames.

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, *, groups: int, eps: float,
                 per_frame_norm: bool = False, output_scale_factor: float = 1.0) -> None:
        super().__init__()
        self.norm1 = video_group_norm(groups, in_channels, eps, per_frame_norm)
        self.conv1 = FrameConv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = video_group_norm(groups, out_channels, eps, per_frame_norm)
        self.conv2 = FrameConv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_shortcut = (FrameConv2d(in_channels, out_channels, kernel_size=1)
                              if in_channels != out_channels else None)
        self.output_scale_factor = output_scale_factor

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        # x: (b, c_in, f, h, w); temb: (b, temb_channels) shared by all frames
        h = self.conv1(F.silu(self.norm1(x)))  # (b, c_out, f, h, w)
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(F.silu(self.norm2(h)))  # dropout is 0 in every config
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (shortcut + h) / self.output_scale_factor


class Downsample3D(Downsample2D):
    """Stride-2 3x3 conv halving h and w of every frame: per-frame ``Downsample2D``."""

    def __init__(self, channels: int, padding: int = 1) -> None:
        super().__init__(channels, use_conv=True, padding=padding, name=DOWNSAMPLE_CONV_NAME)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return frame_by_frame(super().forward, x)  # (b, c, f, h, w) -> (b, c, f, ceil(h/2), ceil(w/2))


class Upsample3D(Upsample2D):
    """Nearest resize of every frame to ``size`` (default 2x), then a 3x3 conv: ``Upsample2D`` per frame."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, use_conv=True)

    def forward(self, x: torch.Tensor,  # type: ignore[override]
                size: tuple[int, int] | None = None) -> torch.Tensor:
        # x: (b, c, f, h, w) -> (b, c, f, H, W) with (H, W) = size or (2h, 2w); the explicit size lets odd
        # latent sizes meet their skip connection (diffusers' forward_upsample_size rule).
        return frame_by_frame(super().forward, x, output_size=tuple(size) if size is not None else None)
