"""Building blocks of the UNet: attention head layout, temporal position code, motion module, video norms."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from latentsync.models.attention import SpatialTransformer
from latentsync.models.motion import MotionModule, TemporalSelfAttention
from latentsync.models.resnet import Downsample3D, FrameGroupNorm, Upsample3D, video_group_norm
from latentsync.models.unet import LatentSyncUNet
from latentsync.models.unet_config import MotionModuleConfig, tiny_unet_config


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """randn / sqrt(fan_in) weights, randn 1-D parameters: every parameter matters, values stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel() if p.ndim > 1 else 1))
    return module


def test_position_code_layout() -> None:
    pe = TemporalSelfAttention(dim=8, heads=2, head_dim=4, max_frames=24).pos_encoder.pe
    assert pe.shape == (1, 24, 8) and pe.dtype == torch.float32
    t, i = 5, 2  # even channel 2i = sin(t * 10000^(-2i/d)), odd channel 2i+1 = cos(same)
    angle = t * 10_000 ** (-2 * i / 8)
    assert math.isclose(pe[0, t, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
    assert math.isclose(pe[0, t, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    assert torch.equal(pe[0, 0], torch.tensor([0.0, 1.0] * 4))


def explicit_attention(attn: Attention, x: torch.Tensor, ctx: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head, head h owning the contiguous channels [h*d, (h+1)*d)."""
    q, k, v = attn.to_q(x), attn.to_k(ctx), attn.to_v(ctx)
    d = q.shape[-1] // heads
    out = []
    for h in range(heads):
        s = slice(d * h, d * h + d)
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(d), dim=-1)
        out.append(weights @ v[..., s])
    return attn.to_out[0](torch.cat(out, dim=-1))


@torch.no_grad()
def test_audio_cross_attention_splits_heads_by_contiguous_channel_blocks() -> None:
    block = randomize_(SpatialTransformer(6, heads=2, groups=3, audio_dim=4)).transformer_blocks[0]
    gen = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 5, 6, generator=gen), torch.randn(2, 7, 4, generator=gen)
    torch.testing.assert_close(block.attn2(x, ctx), explicit_attention(block.attn2, x, ctx, 2),
                               rtol=1e-5, atol=1e-5)
    assert not block.attn2(x, None).any()  # no audio: attn2 adds nothing (the reference skips it)


@torch.no_grad()
def test_temporal_attention_adds_the_position_code_to_its_input_only() -> None:
    attn = randomize_(TemporalSelfAttention(dim=6, heads=3, head_dim=2, max_frames=24)).eval()
    x = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(2))  # ((b h w), frames, c)
    with_pe = x + attn.pos_encoder.pe[:, :5]
    torch.testing.assert_close(attn(x), explicit_attention(attn, with_pe, with_pe, 3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn(x), super(TemporalSelfAttention, attn).forward(with_pe), rtol=0, atol=0)


def test_every_attention_is_sdpa() -> None:
    """Spatial, audio and temporal attention all run AttnProcessor2_0 (F.scaled_dot_product_attention)."""
    model = LatentSyncUNet(tiny_unet_config())
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    assert len(attentions) == 16 * 2 + 20 * 2  # 16 spatial transformers x (attn1, attn2), 20 motion x 2
    assert all(isinstance(a.processor, AttnProcessor2_0) for a in attentions)


@torch.no_grad()
def test_spatial_transformer_works_per_frame() -> None:
    """The GroupNorm and attention see one frame at a time: a frame's output ignores the other frames."""
    module = randomize_(SpatialTransformer(8, heads=2, groups=4, audio_dim=3)).eval()
    gen = torch.Generator().manual_seed(3)
    x, audio = torch.randn(2, 8, 3, 4, 4, generator=gen), torch.randn(6, 5, 3, generator=gen)  # (b f) rows
    out = module(x, audio)
    assert out.shape == x.shape
    frame = module(x[:1, :, 1:2], audio[1:2])  # batch item 0, frame 1 alone
    torch.testing.assert_close(out[:1, :, 1:2], frame, rtol=1e-5, atol=1e-5)


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


@torch.no_grad()
def test_downsample_is_a_stride_2_conv_per_frame() -> None:
    down = randomize_(Downsample3D(3))
    x = torch.randn(2, 3, 4, 7, 6)  # odd height: padding 1 gives ceil(7 / 2) = 4 rows
    frames = x.transpose(1, 2).reshape(8, 3, 7, 6)  # ((b f), c, h, w)
    expected = F.conv2d(frames, down.conv.weight, down.conv.bias, stride=2, padding=1)
    assert [name for name, _ in down.named_parameters()] == ["conv.weight", "conv.bias"]
    torch.testing.assert_close(down(x), expected.reshape(2, 4, 3, 4, 3).transpose(1, 2), rtol=0, atol=1e-6)
