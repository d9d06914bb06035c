"""The frozen networks training uses, loaded from the checkpoint registry (or paths given in the config).

:class:`TrainingVae` wraps the package's :class:`~latentsync.models.vae.LatentVae`: per-sample posterior sampling
(each batch item from its own generator, so samples do not depend on batch composition) and a decode that lets
gradients flow into the latents, under gradient checkpointing (reference: ``vae.enable_gradient_checkpointing()``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange

from latentsync.models.vae import VAE_SCALING_FACTOR, VAE_SHIFT_FACTOR, LatentVae


class TrainingVae:
    """Frozen VAE: ``encode_videos`` (no gradient) and ``decode_with_grad``."""

    def __init__(self, vae: LatentVae, gradient_checkpointing: bool = True) -> None:
        self.vae = vae
        if gradient_checkpointing:
            vae.model.enable_gradient_checkpointing()

    def encode_videos(self, videos: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """(b, f, 3, H, W) in [-1, 1] -> scaled latents (b, 4, f, H/8, W/8); item i samples from generators[i]."""
        latents = [self.vae.encode(video, generator) for video, generator in zip(videos, generators)]
        # LatentVae works in inference mode; a clone outside it is an ordinary tensor the UNet's graph may save.
        return rearrange(torch.stack(latents).clone(), "b f c h w -> b c f h w")

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
