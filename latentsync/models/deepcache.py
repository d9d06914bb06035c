"""Step caching for the LatentSync UNet, computed exactly as the reference's DeepCache helper computes it.

The reference app and ``inference.sh`` run the UNet through DeepCache 0.1.1 (``DeepCacheSDHelper``,
``cache_interval=3, cache_branch_id=0, skip_mode="uniform"``; reference README §4.11 and §14). Its rules,
which :class:`CachedUNet` reproduces by walking the UNet's submodules (the UNet itself is not patched, so one
loaded net can serve several requests at once):

* The step index is the position of ``t`` in the scheduler's timesteps. The first index seen after
  construction (or :meth:`CachedUNet.reset`) is the start; a step is *full* when ``(index - start) %
  cache_interval == 0``. A full step computes everything and stores the outputs of the "wrapped" modules.
* The wrapped modules are: each down block (as a whole, and each of its ResNets, spatial transformers and its
  downsampler), the mid block, and each up block (as a whole, and each ResNet, transformer and upsampler).
  Motion modules are not wrapped: they always run, on whatever the module before them returned.
* ``cache_branch_id`` splits into ``block = id // 3`` and ``layer = id % 3``. Blocks are numbered from the
  outside in: down block ``i`` is ``i``; up blocks count from the last one (the output side is 0), and so do
  the layers inside an up block (its last ResNet is layer 0). On a cached step a wrapped module returns its
  stored output instead of running when it is the mid block, or lies in a block deeper than ``block``, or
  lies in block ``block`` with layer ``>= layer`` (down side) or ``> layer`` (up side).
* Stored outputs live as long as the helper: across the 16-frame windows of a video. The step index restarts
  at 0 with each window's scheduler, so with ``start = 0`` every window begins with a full step.

With the reference's settings (branch 0) a cached step therefore recomputes ``conv_in``, the motion module of
the final up block's second layer on its stored transformer output, that block's last layer (ResNet on the
concatenation with the fresh ``conv_in`` output, transformer, motion module) and the output head; all the
rest comes from the store.

Two savings do not change a single number: a stored output that no cached step can read (one inside a block
that is itself served from the store) is not kept, and a motion module whose output only feeds a ResNet that
returns its stored output is not run (the reference runs it and throws the result away).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from latentsync.models.unet import LatentSyncUNet

# DeepCache numbers branches block * 3 + layer: a down level has two layers and the downsampler (reference
# helper: cache_layer_id = branch % 3, cache_block_id = branch // 3).
BRANCHES_PER_BLOCK = 3
REFERENCE_CACHE_INTERVAL = 3  # the reference app and inference.sh
REFERENCE_CACHE_BRANCH = 0

# A stored output is named like the reference helper's: (side, module kind, block number, layer number).
CacheKey = tuple[str, str, int, int]
DOWN, MID, UP = "down", "mid", "up"


class CachedUNet:
    """``LatentSyncUNet`` with the reference's step caching; call it like the UNet: ``net(sample, t, audio)``.

    One instance per video: call :meth:`set_timesteps` with each window's ``scheduler.timesteps`` before its
    denoising loop; the store carries over from window to window as in the reference. ``cache_interval=1``
    is the plain UNet (every call is passed straight to it).
    """

    def __init__(self, unet: LatentSyncUNet, cache_interval: int = REFERENCE_CACHE_INTERVAL,
                 cache_branch_id: int = REFERENCE_CACHE_BRANCH,
                 timesteps: Sequence[int] | torch.Tensor | None = None) -> None:  # fmt: skip
        if not isinstance(cache_interval, int) or isinstance(cache_interval, bool) or cache_interval < 1:
            raise ValueError(
                f"cache_interval must be an integer >= 1 (1 = no caching), got {cache_interval!r}")
        branches = BRANCHES_PER_BLOCK * len(unet.down_blocks)
        if not isinstance(cache_branch_id, int) or not 0 <= cache_branch_id < branches:
            raise ValueError(
                f"cache_branch_id must be an integer from 0 to {branches - 1}, got {cache_branch_id!r}")
        self.unet = unet
        self.cache_interval = cache_interval
        self.cache_branch_id = cache_branch_id
        self._block, self._layer = divmod(cache_branch_id, BRANCHES_PER_BLOCK)
        self._timesteps: list[int] | None = None
        self._start: int | None = None
        self._store: dict[CacheKey, Any] = {}
        if timesteps is not None:
            self.set_timesteps(timesteps)

    # ---------------------------------------------------------------------------------------- the UNet's face

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def max_frames(self) -> int | None:
        return self.unet.max_frames

    # ------------------------------------------------------------------------------------ step bookkeeping

    def set_timesteps(self, timesteps: Sequence[int] | torch.Tensor) -> None:
        """The loop's timesteps (``scheduler.timesteps``): a call's step index is ``t``'s position in them."""
        values = [int(t) for t in timesteps]
        if not values:
            raise ValueError("timesteps must not be empty")
        self._timesteps = values

    def reset(self) -> None:
        """Forget the stored outputs and the start index (the next call is a full step)."""
        self._start = None
        self._store.clear()

    def step_index(self, timestep: torch.Tensor | int | float) -> int:
        t = torch.as_tensor(timestep).flatten()
        if t.numel() == 0 or not bool((t == t[0]).all()):
            raise ValueError(f"step caching needs one timestep per call, got {t.tolist()}")
        if self._timesteps is None:
            raise ValueError("call set_timesteps(scheduler.timesteps) before the denoising loop")
        value = int(t[0].item())
        if value not in self._timesteps:
            raise ValueError(f"timestep {value} is not one of the scheduler's timesteps {self._timesteps}")
        return self._timesteps.index(value)

    def is_full_step(self, index: int) -> bool:
        """Whether step ``index`` recomputes everything (the first step seen is the start)."""
        start = index if self._start is None else self._start
        return (index - start) % self.cache_interval == 0

    def _cacheable(self, key: CacheKey) -> bool:
        """Whether a cached step returns this module's stored output (the reference's ``is_skip_step``)."""
        side, _, block, layer = key
        if side == MID or block > self._block:
            return True
        if block < self._block:
            return False
        return layer >= self._layer if side == DOWN else layer > self._layer

    def _kept(self, key: CacheKey) -> bool:
        """Whether a cached step can read this stored output: cacheable, and its block is not served whole."""
        side, kind, block, _ = key
        inner = side != MID and kind != "block"
        enclosing_block_cached = inner and self._cacheable((side, "block", block, 0))
        return self._cacheable(key) and not enclosing_block_cached

    # ---------------------------------------------------------------------------------------- the forward

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor | int | float,
                 audio_embeds: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The UNet's prediction, with the wrapped modules served from the store on cached steps."""
        if self.cache_interval == 1:
            return self.unet(sample, timestep, audio_embeds)
        index = self.step_index(timestep)
        full = self.is_full_step(index)
        if self._start is None:
            self._start = index
        return self._forward(sample, timestep, audio_embeds, full)

    def _run(self, key: CacheKey, full: bool, fn: Callable[..., Any], *args: Any) -> Any:
        """A wrapped module: its stored output on a cached step, else run it (and store what may be read)."""
        if not full and self._cacheable(key):
            return self._store[key]
        out = fn(*args)
        if self._kept(key):
            self._store[key] = out
        return out

    def _forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float,
                 audio_embeds: torch.Tensor | None, full: bool) -> torch.Tensor:  # fmt: skip
        # The top-level structure of LatentSyncUNet.forward, with each block call going through _run.
        unet = self.unet
        b, _, f, _, _ = sample.shape
        if unet.max_frames is not None and f > unet.max_frames:
            raise ValueError(f"the UNet takes at most {unet.max_frames} frames per call, got {f}")
        audio = unet._fold_audio(audio_embeds, b, f, sample.dtype)  # ((b f), tokens, d) or None
        temb = unet.time_embedding(unet._timesteps(timestep, b, sample.device).to(sample.dtype))  # (b, 4*c0)
        if unet.config.center_input_sample:
            sample = 2 * sample - 1

        x = unet.conv_in(sample)  # (b, c0, f, h, w): always fresh, and the final up block's last skip
        skips = [x]
        for i, block in enumerate(unet.down_blocks):
            key = (DOWN, "block", i, 0)
            x, block_skips = self._run(key, full, self._down_block, i, block, x, temb, audio, full)
            skips.extend(block_skips)
        x = self._run((MID, "mid_block", 0, 0), full, unet.mid_block, x, temb, audio)
        n_up = len(unet.up_blocks)
        for k, block in enumerate(unet.up_blocks):
            n = len(block.resnets)
            block_skips, skips = skips[-n:], skips[:-n]
            size = skips[-1].shape[-2:] if skips else None
            number = n_up - 1 - k  # up blocks count from the output side
            x = self._run((UP, "block", number, 0), full, self._up_block, number, block, x, block_skips, temb,
                          audio, size, full)
        return unet.conv_out(F.silu(unet.conv_norm_out(x)))  # (b, out_channels, f, h, w)

    def _down_block(self, i: int, block, x: torch.Tensor, temb: torch.Tensor, audio: torch.Tensor | None,
                    full: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:  # fmt: skip
        # DownBlock3D.forward with each ResNet, transformer and downsampler going through _run.
        skips = []
        for j, resnet in enumerate(block.resnets):
            x = self._run((DOWN, "resnet", i, j), full, resnet, x, temb)
            if block.attentions:
                x = self._run((DOWN, "attentions", i, j), full, block.attentions[j], x, audio)
            if block.motion_modules:
                x = block.motion_modules[j](x)  # not wrapped: runs on stored outputs too
            skips.append(x)
        for downsampler in block.downsamplers:
            x = self._run((DOWN, "downsampler", i, len(block.resnets)), full, downsampler, x)
            skips.append(x)
        return x, skips

    def _up_block(self, number: int, block, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor,
                  audio: torch.Tensor | None, size, full: bool) -> torch.Tensor:  # fmt: skip
        # UpBlock3D.forward with each ResNet, transformer and upsampler going through _run.
        n = len(block.resnets)
        for j, resnet in enumerate(block.resnets):
            layer = n - 1 - j  # layers count from the output side too
            x = self._run((UP, "resnet", number, layer), full,
                          lambda h, s: resnet(torch.cat([h, s], dim=1), temb), x, skips[-1 - j])
            if block.attentions:
                x = self._run((UP, "attentions", number, layer), full, block.attentions[j], x, audio)
            next_resnet_stored = j + 1 < n and not full and self._cacheable((UP, "resnet", number, layer - 1))
            if block.motion_modules and not next_resnet_stored:
                x = block.motion_modules[j](x)  # not wrapped: runs on stored outputs too
        for upsampler in block.upsamplers:
            x = self._run((UP, "upsampler", number, 0), full, upsampler, x, size)
        return x
