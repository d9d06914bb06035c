"""The frozen networks training uses, loaded from the checkpoint registry (or paths given in the config).

:class:`TrainingVae` wraps the package's :class:`~latentsync.models.vae.LatentVae`: per-sample posterior sampling
(each batch item from its own generator, so samples do not depend on batch composition) and a decode that lets
gradients flow into the latents, under gradient checkpointing (reference: ``vae.enable_gradient_checkpointing()``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange

from latentsync.errors import InputError
from latentsync.models.vae import VAE_SCALING_FACTOR, VAE_SHIFT_FACTOR, LatentVae

# The frozen networks' dtype per train.mixed_precision on an accelerator: the reference holds the VAE, StableSyncNet
# and the VideoMAE ViT-g in the mixed-precision dtype (the ViT-g alone is ~4 GB in float32, ~2 GB in fp16); LPIPS
# stays float32. On the CPU half-precision convolutions are slow or missing, so everything stays float32 there.
FROZEN_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def frozen_dtype(mixed_precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype the frozen networks are held in (see :data:`FROZEN_DTYPES`)."""
    return FROZEN_DTYPES[mixed_precision] if torch.device(device).type != "cpu" else torch.float32


class TrainingVae:
    """Frozen VAE: ``encode_videos`` (no gradient) and ``decode_with_grad``."""

    def __init__(self, vae: LatentVae, gradient_checkpointing: bool = True) -> None:
        self.vae = vae
        if gradient_checkpointing:
            vae.model.enable_gradient_checkpointing()

    def encode_videos(self, videos: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """(b, f, 3, H, W) in [-1, 1] -> scaled latents (b, 4, f, H/8, W/8); item i samples from generators[i]."""
        latents = [self.vae.encode(video, generator) for video, generator in zip(videos, generators)]
        # LatentVae works in inference mode; a copy outside it is an ordinary tensor the UNet's graph may save (float32
        # whatever the VAE's dtype: noise, x0 and the losses are computed in float32, the UNet under autocast).
        return rearrange(torch.stack(latents).float().clone(), "b f c h w -> b c f h w")

    def decode_with_grad(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (n, 4, h, w) -> pixels (n, 3, 8h, 8w), not clamped, differentiable w.r.t. the latents."""
        model = self.vae.model
        return model.decode(latents.to(model.dtype) / VAE_SCALING_FACTOR + VAE_SHIFT_FACTOR).sample


def vae_folder(version: str, checkpoints_dir: str | None) -> Path:
    """The diffusers VAE folder of registry version ``version`` (the one the pipeline uses)."""
    from latentsync.checkpoints import fetch, get_version, local_checkpoints_dir

    return fetch(list(get_version(version).vae), local_checkpoints_dir(checkpoints_dir))[0].parent


def whisper_file(version: str, checkpoints_dir: str | None) -> Path:
    """The Whisper checkpoint of registry version ``version`` (the one the pipeline uses)."""
    from latentsync.checkpoints import fetch, get_version, local_checkpoints_dir

    return fetch([get_version(version).whisper], local_checkpoints_dir(checkpoints_dir))[0]


def whisper_and_vae_paths(version: str, checkpoints_dir: str | None) -> tuple[Path, Path]:
    """(Whisper checkpoint, VAE folder) of registry version ``version``, without fetching its UNet."""
    return whisper_file(version, checkpoints_dir), vae_folder(version, checkpoints_dir)


def auxiliary_path(explicit: str | None, name: str, checkpoints_dir: str | None) -> Path:
    """The config's explicit path, else the registry's auxiliary file ``name`` (local directory or Hub)."""
    if explicit:
        return Path(explicit)
    from latentsync.checkpoints import resolve_auxiliary

    return resolve_auxiliary(name, checkpoints_dir)


def resolve_init_unet(init_unet: str, checkpoints_dir: str | None, resolution: int) -> Path:
    """The file of ``init_unet``: a released UNet by name (``released-1.5`` / ``released-1.6``, from
    ``checkpoints_dir``, ``$LATENTSYNC_CHECKPOINTS`` or the Hub, like inference), else the path itself.

    A released UNet is tied to the face size it was trained at (1.5: 256 px, 1.6: 512 px; a local folder's
    ``latentsync_config.json`` may say otherwise): another ``data.resolution`` raises
    :class:`~latentsync.errors.InputError` naming the other release.
    """
    from latentsync.training.config import RELEASED_UNETS

    version = RELEASED_UNETS.get(init_unet)
    if version is None:
        if init_unet.startswith("released-"):
            raise InputError(f"init_unet: unknown released UNet {init_unet!r}; available: {', '.join(RELEASED_UNETS)} "
                             f"(or a path to a .pt / .safetensors file)")
        return Path(init_unet)
    from latentsync.checkpoints import LocalSettings, fetch, get_version, local_checkpoints_dir

    root = local_checkpoints_dir(checkpoints_dir)
    spec = get_version(version)
    trained_at = LocalSettings.read(root).resolution or spec.resolution
    if trained_at != resolution:
        fits = [name for name, v in RELEASED_UNETS.items() if get_version(v).resolution == resolution]
        hint = f"; use {fits[0]}" if fits else ""
        raise InputError(f"init_unet: {init_unet} was trained on {trained_at} px faces, but data.resolution is "
                         f"{resolution}{hint}")
    return fetch([spec.unet], root)[0]
