"""Low-memory inference: the two classifier-free-guidance halves through the UNet one after the other.

With guidance the pipeline calls the UNet on a batch of two (unconditional first, batch-major, as the
reference): every activation of the call is twice that of one half. :class:`SequentialGuidance` has the
UNet's call signature and runs each batch item on its own, then stacks the predictions, so the UNet's
activations are those of one item (one 16-frame window) while the result is the batched call's (every
layer of the UNet treats batch items independently: per-item GroupNorms, attention within an item's
frames, motion modules within an item's frame sequence; only float rounding of batch-shaped kernels differs).

Step caching keeps state per video (:class:`latentsync.models.deepcache.CachedUNet`), so each half needs
its own: give one net per item, ``SequentialGuidance(CachedUNet(unet), CachedUNet(unet))``; one plain
UNet serves every item.

Peak VRAM, estimated from sizes (fp16 = 2 B a value; NOT measured: no GPU in the session that wrote this;
``python benchmarks/bench_gpu.py`` prints the measured peaks with and without this mode):

* Weights: UNet 1,267,099,844 parameters (reference README §9) → 2.53 GB; VAE 83.7 M → 0.17 GB; Whisper tiny's
  encoder ~8 M → 0.02 GB (1.5 and 1.6 both use Whisper tiny). ≈ 2.7 GB.
* UNet activations of one call: dominated by the outermost level (320 channels at the latent size, 64² for
  1.6, 32² for 1.5) over b·16 frames, with flash/memory-efficient attention (no tokens² matrix): per frame at
  64², 4096 tokens × (2560 GEGLU + 1280 + ~8 × 320 live and skip) channels × 2 B ≈ 53 MB, plus the deeper
  levels ≈ 60 MB → 32 frames (two halves) ≈ 2 GB, 16 frames (one half) ≈ 1 GB. 1.5 (32²): a quarter,
  ≈ 0.5 GB batched, ≈ 0.25 GB in halves.
* VAE decode: at 512² (1.6) the last up level holds 256- and 128-channel tensors at 512² (134 and 67 MB a
  frame) → ≈ 0.45 GB a frame: ≈ 3.6 GB for 8 frames a call, ≈ 0.45 GB for 1. Encode is similar. At 256²
  (1.5) a quarter: ≈ 0.9 GB for 8, ≈ 0.12 GB for 1.
* With the overlapped pipeline the next window's VAE encode runs while the UNet denoises, so those two add.
  Face analysis runs in its own pass before (SFD, float32, 8 frames a call ≈ 1.6 GB next to the weights).
* The CUDA context (~0.5 GB) and allocator fragmentation (~10 %) come on top.

Estimated peaks (denoising; + context): 1.6 plain ≈ 2.7 + 2 + 3.6 ≈ 8.3 GB (≈ 9 GB), low-memory ≈ 2.7 + 1 +
0.45 ≈ 4.2 GB (≈ 5 GB, < 12 GB); 1.5 plain ≈ 2.7 + 0.5 + 0.9 ≈ 4.1 GB (≈ 4.6 GB), low-memory ≈ 2.7 + 0.25 +
0.12 ≈ 3.1 GB (≈ 3.6 GB). Face analysis peaks at ≈ 2.7 + 1.6 + 0.5 ≈ 4.8 GB in both modes (< 6.5 GB).
Measured peaks: not measured.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

UNetCall = Callable[..., torch.Tensor]  # net(sample, timestep, audio_embeds) -> (b, c, f, h, w)


class SequentialGuidance:
    """Call it like the UNet: ``net(sample, t, audio)``; batch items go through the net(s) one at a time.

    ``nets``: one net for every item (a stateless UNet), or one net per item (item ``i`` through ``nets[i]``,
    e.g. one :class:`~latentsync.models.deepcache.CachedUNet` per guidance half); a batch may then hold at
    most ``len(nets)`` items (one item, without guidance, goes through ``nets[0]``).
    """

    def __init__(self, *nets: UNetCall) -> None:
        if not nets:
            raise ValueError("SequentialGuidance needs at least one net")
        self.nets = nets

    # The first net's face (config, dtype, device, max_frames), so callers can treat this like the UNet.
    @property
    def config(self):
        return self.nets[0].config

    @property
    def dtype(self) -> torch.dtype:
        return self.nets[0].dtype

    @property
    def device(self) -> torch.device:
        return self.nets[0].device

    @property
    def max_frames(self) -> int | None:
        return self.nets[0].max_frames

    def set_timesteps(self, timesteps) -> None:
        """Passed to every net that keeps step state (``CachedUNet.set_timesteps``)."""
        for net in self.nets:
            if hasattr(net, "set_timesteps"):
                net.set_timesteps(timesteps)

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor | int | float,
                 audio_embeds: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        b, f = sample.shape[0], sample.shape[2]  # (b, c, f, h, w)
        if len(self.nets) > 1 and b > len(self.nets):
            raise ValueError(f"SequentialGuidance with {len(self.nets)} nets takes at most {len(self.nets)} "
                             f"batch items, got {b}")  # fmt: skip
        if b == 1:
            return self.nets[0](sample, timestep, audio_embeds)
        timesteps = self._per_item_timesteps(timestep, b)
        outputs = []
        for i in range(b):
            net = self.nets[i] if len(self.nets) > 1 else self.nets[0]
            outputs.append(net(sample[i : i + 1], timesteps[i], self._item_audio(audio_embeds, i, b, f)))
        return torch.cat(outputs)  # (b, c, f, h, w)

    @staticmethod
    def _per_item_timesteps(timestep: torch.Tensor | int | float, b: int) -> list:
        if not isinstance(timestep, torch.Tensor) or timestep.numel() == 1:
            return [timestep] * b
        if timestep.shape != (b,):
            raise ValueError(f"timestep must be a scalar or have shape ({b},), got {tuple(timestep.shape)}")
        return list(timestep)

    @staticmethod
    def _item_audio(audio: torch.Tensor | None, i: int, b: int, f: int) -> torch.Tensor | None:
        """Item ``i``'s audio from ((b f), tokens, d) batch-major or (b, f, tokens, d)."""
        if audio is None:
            return None
        if audio.ndim == 4 and audio.shape[0] == b:
            return audio[i : i + 1]
        if audio.ndim == 3 and audio.shape[0] == b * f:
            return audio[i * f : (i + 1) * f]
        raise ValueError(f"audio_embeds must have shape ({b}*{f}, tokens, d) or ({b}, {f}, tokens, d), "
                         f"got {tuple(audio.shape)}")  # fmt: skip
