"""Building blocks of the UNet: attention head layout, temporal position code, motion module, video norms."""

from __future__ import annotations

import math

import torch

from latentsync.models.attention import MultiHeadAttention
from latentsync.models.motion import MotionModule, SinusoidalPositionalEncoding
from latentsync.models.resnet import FrameGroupNorm, Upsample3D, video_group_norm
from latentsync.models.unet_config import MotionModuleConfig


def test_position_code_layout() -> None:
    pe = SinusoidalPositionalEncoding(dim=8, max_len=24).pe
    assert pe.shape == (1, 24, 8) and pe.dtype == torch.float32
    t, i = 5, 2  # even channel 2i = sin(t * 10000^(-2i/d)), odd channel 2i+1 = cos(same)
    angle = t * 10_000 ** (-2 * i / 8)
    assert math.isclose(pe[0, t, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
    assert math.isclose(pe[0, t, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    assert torch.equal(pe[0, 0], torch.tensor([0.0, 1.0] * 4))


@torch.no_grad()
def test_attention_splits_heads_by_contiguous_channel_blocks() -> None:
    gen = torch.Generator().manual_seed(0)
    attn = MultiHeadAttention(query_dim=6, heads=2, head_dim=3, context_dim=4)
    for p in attn.parameters():
        p.copy_(torch.randn(p.shape, generator=gen))
    x, ctx = torch.randn(2, 5, 6, generator=gen), torch.randn(2, 7, 4, generator=gen)
    q, k, v = attn.to_q(x), attn.to_k(ctx), attn.to_v(ctx)
    heads = []
    for h in range(2):  # head h owns channels [3h, 3h + 3)
        s = slice(3 * h, 3 * h + 3)
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(3), dim=-1)
        heads.append(weights @ v[..., s])
    expected = attn.to_out[0](torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(x, ctx), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_fresh_motion_module_is_identity_and_mixes_frames_once_trained() -> None:
    module = MotionModule(32, MotionModuleConfig(num_attention_heads=2)).eval()
    x = torch.randn(1, 32, 3, 4, 4)
    assert torch.equal(module(x), x)  # zero-initialised proj_out
    torch.nn.init.normal_(module.temporal_transformer.proj_out.weight)
    y = module(x)
    x2 = x.clone()
    x2[:, :, 2] = torch.randn(1, 32, 4, 4)  # change only the last frame
    y2 = module(x2)
    assert (y2[:, :, 0] - y[:, :, 0]).abs().max() > 1e-3  # ...which reaches frame 0 via temporal attention
    assert module.temporal_transformer.norm.num_groups == 32 and module.temporal_transformer.norm.eps == 1e-6


def test_video_group_norms() -> None:
    x = torch.randn(2, 8, 3, 4, 4)
    cross = video_group_norm(4, 8, 1e-5, per_frame=False)
    per_frame = video_group_norm(4, 8, 1e-5, per_frame=True)
    assert type(cross) is torch.nn.GroupNorm and isinstance(per_frame, FrameGroupNorm)
    # per frame: each (batch, frame, group) slice has zero mean; cross-frame: only each (batch, group) slice
    frame_means = per_frame(x).reshape(2, 4, 2, 3, 16).mean(dim=(2, 4))
    torch.testing.assert_close(frame_means, torch.zeros(2, 4, 3), atol=1e-5, rtol=0)
    video_means = cross(x).reshape(2, 4, -1).mean(-1)
    torch.testing.assert_close(video_means, torch.zeros(2, 4), atol=1e-5, rtol=0)
    assert cross(x).reshape(2, 4, 2, 3, 16).mean(dim=(2, 4)).abs().max() > 1e-2


@torch.no_grad()
def test_upsample_is_nearest_per_frame() -> None:
    up = Upsample3D(2)
    torch.nn.init.zeros_(up.conv.weight)
    torch.nn.init.zeros_(up.conv.bias)
    up.conv.weight[0, 0, 1, 1] = 1.0  # identity on channel 0
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(1, 2, 3, 2, 2)
    y = up(x)
    assert y.shape == (1, 2, 3, 4, 4)
    assert torch.equal(y[0, 0], x[0, 0].repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2))
    assert up(x, size=(3, 5)).shape == (1, 2, 3, 3, 5)
