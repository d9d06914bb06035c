"""The Stable Diffusion VAE (``stabilityai/sd-vae-ft-mse``): face pixels ↔ scaled latents, in bounded chunks.

A thin wrapper over ``diffusers.AutoencoderKL`` (README §2.2, §4.6): ``encode`` returns
``(posterior sample − VAE_SHIFT_FACTOR) · VAE_SCALING_FACTOR`` (the reference samples the posterior, it
does not take its mode) and ``decode`` inverts the scaling before the decoder. Frames go through the
network ``batch_size`` at a time; each chunk is moved to the VAE's device, processed, and its result moved
to the requested output device, so at most one chunk of frames sits on the accelerator at once.

Sampling in chunks stays reproducible: the posterior noise is drawn frame by frame from the one
generator (diffusers' ``sample`` with a list holding that generator once per frame), so frame k always
gets the generator's k-th ``(1, 4, h, w)`` draw, whatever ``batch_size`` is. The draws do depend on the
generator's device (CPU and CUDA streams differ) and on the VAE's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from latentsync.errors import CheckpointError

VAE_REPO_ID = "stabilityai/sd-vae-ft-mse"  # the VAE every LatentSync version uses (diffusers format)
VAE_SCALING_FACTOR = 0.18215  # SD-1.x latent scale; the reference forces it regardless of the VAE config
VAE_SHIFT_FACTOR = 0.0  # SD-1.x has no latent shift; the reference forces 0
VAE_LATENT_CHANNELS = 4
VAE_DOWNSCALE = 8  # pixels per latent cell: three stride-2 down blocks (2**3)
DEFAULT_VAE_BATCH_SIZE = 8  # frames per VAE call; 512² fp16 decode of 8 frames stays within a few GB
# Frames per VAE call in the low-memory mode: the decoder's activations scale with the frames per call (at 512²
# fp16 about 0.35 GB per frame, see latentsync/models/low_memory.py), the results do not depend on it.
LOW_MEMORY_VAE_BATCH_SIZE = 1


def tiny_vae_config() -> dict[str, Any]:
    """An AutoencoderKL config with sd-vae-ft-mse's block structure (4 levels, 2 layers, 4 latent channels,
    downscale 8, mid-block attention) but widths 8–32 instead of 128–512, for fast CPU tests."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [8, 16, 32, 32],
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": VAE_LATENT_CHANNELS,
        "norm_num_groups": 4,
        "sample_size": 64,
        "scaling_factor": VAE_SCALING_FACTOR,
    }


def save_random_tiny_vae(path: str | Path, seed: int, config: dict[str, Any] | None = None) -> Path:
    """Write a random AutoencoderKL (``tiny_vae_config()`` unless given) in diffusers format to ``path``.

    Weights ``randn / sqrt(fan_in)``, norm scales ``1 + 0.1·randn``, biases ``0.1·randn``, from a
    ``torch.Generator`` seeded with ``seed`` (the global RNG is not used for the values).
    """
    model = AutoencoderKL(**(config or tiny_vae_config()))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim > 1:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
            elif name.endswith("weight"):  # every 1-D weight in AutoencoderKL is a GroupNorm scale
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    path = Path(path)
    model.save_pretrained(path)
    return path


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1 (frames per VAE call), got {batch_size!r}")


class LatentVae:
    """Chunked, scaled encode/decode around a diffusers ``AutoencoderKL``."""

    def __init__(
        self,
        model: AutoencoderKL,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = DEFAULT_VAE_BATCH_SIZE,
    ) -> None:
        _check_batch_size(batch_size)
        config = model.config
        downscale = 2 ** (len(config.block_out_channels) - 1)
        if config.latent_channels != VAE_LATENT_CHANNELS or downscale != VAE_DOWNSCALE:
            raise CheckpointError(
                f"VAE has {config.latent_channels} latent channels and downscale {downscale};"
                f" LatentSync needs {VAE_LATENT_CHANNELS} and {VAE_DOWNSCALE}"
                f" (an SD-1.x VAE such as {VAE_REPO_ID})"
            )
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        if (
            model.dtype != dtype
        ):  # from_pretrained already loaded in dtype; diffusers warns on a redundant cast
            model = model.to(dtype=dtype)
        self.model = model.to(self.device).eval().requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = DEFAULT_VAE_BATCH_SIZE,
    ) -> LatentVae:
        """Load a diffusers-format AutoencoderKL from a local folder (or a Hub repo id, when online)."""
        try:
            model = AutoencoderKL.from_pretrained(str(path_or_repo), torch_dtype=dtype)
        except OSError as err:  # missing folder / file, or the Hub unreachable
            raise CheckpointError(f"cannot load the VAE from {path_or_repo}: {err}") from err
        return cls(model, device=device, dtype=dtype, batch_size=batch_size)

    def _check_frames(self, name: str, frames: torch.Tensor, channels: int) -> None:
        if frames.ndim != 4 or frames.shape[1] != channels:
            raise ValueError(f"{name} must be (n, {channels}, h, w), got shape {tuple(frames.shape)}")
        if frames.shape[0] == 0:
            raise ValueError(f"{name} holds no frames (shape {tuple(frames.shape)})")

    def _map_chunks(
        self,
        frames: torch.Tensor,
        fn: Callable[[torch.Tensor], torch.Tensor],
        out_device: torch.device | str | None,
        batch_size: int | None,
    ) -> torch.Tensor:
        if batch_size is None:
            batch_size = self.batch_size
        _check_batch_size(batch_size)
        out_device = frames.device if out_device is None else torch.device(out_device)
        # Contiguous (NCHW) chunks: a channels-last view (e.g. a permuted (n, h, w, c) batch) makes the convolutions
        # take another kernel path, whose fp32 rounding moves latents by ~1e-3 against the reference's.
        outputs = [
            fn(chunk.to(device=self.device, dtype=self.dtype).contiguous()).to(out_device)
            for chunk in frames.split(batch_size)
        ]
        return torch.cat(outputs)

    @torch.inference_mode()
    def encode(
        self,
        pixels: torch.Tensor,
        generator: torch.Generator,
        out_device: torch.device | str | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Pixels (n, 3, H, W) in [-1, 1] → scaled posterior samples (n, 4, H/8, W/8) in ``self.dtype``.

        The result lands on ``out_device`` (default: the input's device). ``batch_size``: frames per network
        call for this call only (default ``self.batch_size``); the result does not depend on it.
        """
        self._check_frames("pixels", pixels, 3)
        if pixels.shape[2] % VAE_DOWNSCALE or pixels.shape[3] % VAE_DOWNSCALE:
            raise ValueError(
                f"pixel height and width must be multiples of {VAE_DOWNSCALE}, got {tuple(pixels.shape[2:])}"
            )

        def encode_chunk(chunk: torch.Tensor) -> torch.Tensor:
            posterior = self.model.encode(chunk).latent_dist
            # One draw per frame from the one generator: chunking leaves the noise unchanged (see module doc).
            sample = posterior.sample(generator=[generator] * chunk.shape[0])  # (b, 4, h, w)
            return (sample - VAE_SHIFT_FACTOR) * VAE_SCALING_FACTOR

        return self._map_chunks(pixels, encode_chunk, out_device, batch_size)

    @torch.inference_mode()
    def decode(
        self,
        latents: torch.Tensor,
        out_device: torch.device | str | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Scaled latents (n, 4, h, w) → pixels (n, 3, 8h, 8w), nominally in [-1, 1] (not clamped, like the
        reference; callers clamp when converting to uint8). Lands on ``out_device`` (default: the input's).
        ``batch_size``: frames per network call for this call only (default ``self.batch_size``)."""
        self._check_frames("latents", latents, VAE_LATENT_CHANNELS)

        def decode_chunk(chunk: torch.Tensor) -> torch.Tensor:
            return self.model.decode(chunk / VAE_SCALING_FACTOR + VAE_SHIFT_FACTOR).sample  # (b, 3, 8h, 8w)

        return self._map_chunks(latents, decode_chunk, out_device, batch_size)
