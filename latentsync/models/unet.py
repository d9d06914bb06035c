"""The LatentSync denoiser: an SD-1.5-shaped UNet inflated to video, conditioned on Whisper audio tokens.

Input ``(b, 13, f, h, w)`` = [noisy latent 4 | mask 1 | masked-image latent 4 | reference latent 4], output
the predicted noise ``(b, 4, f, h, w)``. Audio enters only through the ``attn2`` cross-attention of every
spatial transformer; frames interact through the motion modules and through the cross-frame ResNet GroupNorms.
``state_dict()`` names and shapes equal the official ``latentsync_unet.pt`` (reference README §3.3); so does the
order, except that each spatial transformer block lists ``norm3`` before ``ff`` (diffusers' block).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from einops import rearrange
from torch import nn

from latentsync.models.resnet import FrameConv2d, video_group_norm
from latentsync.models.unet_blocks import DownBlock3D, MidBlock3D, UpBlock3D
from latentsync.models.unet_config import CROSS_ATTN_DOWN_BLOCK, CROSS_ATTN_UP_BLOCK, UNetConfig

# Width multiplier of the timestep embedding MLP (320 -> 1280 in SD-1.5).
TIME_EMBED_MULT = 4
# Random weights written by randomize_zero_init_: 1-D parameters get this much Gaussian noise added.
RANDOM_1D_PARAM_NOISE = 0.1


class LatentSyncUNet(nn.Module):
    """The official ``UNet3DConditionModel`` re-implemented (load big weights via a meta-device build)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.block_out_channels
        n_levels = len(channels)
        mm_levels = set(config.motion_module_resolutions) if config.use_motion_module else set()

        self.conv_in = FrameConv2d(config.in_channels, channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(channels[0], config.flip_sin_to_cos, config.freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], TIME_EMBED_MULT * channels[0])

        self.down_blocks = nn.ModuleList()
        for i, block_type in enumerate(config.down_block_types):
            self.down_blocks.append(DownBlock3D(
                config, channels[max(i - 1, 0)], channels[i],
                with_attention=block_type == CROSS_ATTN_DOWN_BLOCK,
                with_motion=2**i in mm_levels and not config.motion_module_decoder_only,
                add_downsample=i < n_levels - 1))
        # Up blocks are registered before the mid block: that is the official state_dict order.
        self.up_blocks = nn.ModuleList()
        rev = channels[::-1]
        for i, block_type in enumerate(config.up_block_types):
            self.up_blocks.append(UpBlock3D(
                config, rev[max(i - 1, 0)], rev[i], rev[min(i + 1, n_levels - 1)],
                with_attention=block_type == CROSS_ATTN_UP_BLOCK,
                with_motion=2 ** (n_levels - 1 - i) in mm_levels,
                add_upsample=i < n_levels - 1))
        self.mid_block = MidBlock3D(config, channels[-1])
        self.conv_norm_out = video_group_norm(config.norm_num_groups, channels[0], config.norm_eps,
                                              per_frame=config.use_inflated_groupnorm)
        self.conv_out = FrameConv2d(channels[0], config.out_channels, kernel_size=3, padding=1)
        # The official net starts with zero input and output convs (fine-tuned from SD-1.5, whose conv_in has
        # 4 input channels); loaded checkpoints overwrite this.
        for conv in (self.conv_in, self.conv_out):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute every ResNet, transformer and motion module in the backward pass instead of storing its
        activations (training memory); the outputs are unchanged."""
        for block in (*self.down_blocks, self.mid_block, *self.up_blocks):
            block.gradient_checkpointing = enabled

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv_in.weight.device

    @property
    def max_frames(self) -> int | None:
        """Most frames one call can take (the motion modules' position-code length), None if unlimited."""
        mm = self.config.motion_module_kwargs
        if self.config.use_motion_module and mm.temporal_position_encoding:
            return mm.temporal_position_encoding_max_len
        return None

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float,
                audio_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in ``sample``.

        sample: (b, in_channels, f, h, w). timestep: a scalar or (b,) shared by all frames of a batch item.
        audio_embeds: ((b f), tokens, cross_attention_dim) batch-major, or
        (b, f, tokens, cross_attention_dim); None skips the audio cross-attention.
        Returns (b, out_channels, f, h, w).
        """
        b, _, f, _, _ = sample.shape
        if self.max_frames is not None and f > self.max_frames:
            raise ValueError(f"the UNet takes at most {self.max_frames} frames per call, got {f}")
        audio = self._fold_audio(audio_embeds, b, f, sample.dtype)  # ((b f), tokens, d) or None
        temb = self.time_embedding(self._timesteps(timestep, b, sample.device).to(sample.dtype))  # (b, 4*c0)
        if self.config.center_input_sample:
            sample = 2 * sample - 1

        x = self.conv_in(sample)  # (b, c0, f, h, w)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, audio)
            skips.extend(block_skips)
        x = self.mid_block(x, temb, audio)  # (b, c_last, f, h/8, w/8)
        for block in self.up_blocks:
            n = len(block.resnets)
            block_skips, skips = skips[-n:], skips[:-n]
            # Upsample to the next level's skip size (2x unless h or w was odd there).
            x = block(x, block_skips, temb, audio, upsample_size=skips[-1].shape[-2:] if skips else None)
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # (b, out_channels, f, h, w)

    def _timesteps(self, timestep: torch.Tensor | float, batch: int, device: torch.device
                   ) -> torch.Tensor:
        t = torch.as_tensor(timestep, device=device)
        if t.ndim == 0 or t.numel() == 1:
            t = t.reshape(1).expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
        return self.time_proj(t)  # (b, c0) float32 sinusoidal code

    def _fold_audio(self, audio: torch.Tensor | None, batch: int, frames: int, dtype: torch.dtype
                    ) -> torch.Tensor | None:
        if audio is None:
            return None
        if audio.ndim == 4 and audio.shape[:2] == (batch, frames):
            audio = rearrange(audio, "b f n d -> (b f) n d")
        dim = self.config.cross_attention_dim
        if audio.ndim != 3 or audio.shape[0] != batch * frames or audio.shape[2] != dim:
            raise ValueError(f"audio_embeds must have shape ({batch}*{frames}, tokens, {dim}) or "
                             f"({batch}, {frames}, tokens, {dim}), got {tuple(audio.shape)}")
        return audio.to(dtype)


def randomize_zero_init_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give a freshly built net non-trivial random weights (for tests and smoke runs), in place.

    The recipe of the tiny golden: every all-zero parameter with more than one dimension (conv_in, conv_out,
    motion-module proj_out) becomes randn / sqrt(fan_in), and every 1-D parameter (biases, norm scales) gets
    ``0.1 * randn`` added, so the output depends on all inputs. Draws on CPU from ``generator`` in
    ``named_parameters`` order. Returns the model.
    """
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.ndim > 1 and not param.any():
                fan_in = math.prod(param.shape[1:])
                noise = torch.randn(param.shape, generator=generator) / math.sqrt(fan_in)
                param.copy_(noise)
            elif param.ndim == 1:
                noise = torch.randn(param.shape, generator=generator) * RANDOM_1D_PARAM_NOISE
                param.add_(noise.to(param.device, param.dtype))
    return model
