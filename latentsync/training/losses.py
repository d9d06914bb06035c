"""Training losses as small pure functions (reference ``scripts/train_unet.py``, training/README §1.3, §4).

Weights live in the config (:class:`~latentsync.training.config.UNetLossConfig`); :func:`total_loss` combines them.
Randomness only from passed ``torch.Generator`` objects.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

NUM_TRAIN_TIMESTEPS = 1000  # the DDPM/DDIM schedule the UNet is trained on (pipeline.DDIM_CONFIG)
BCE_LOG_FLOOR = -100.0  # torch's BCELoss clamps log() at -100


def cosine_bce(vision_embeds: torch.Tensor, audio_embeds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Official ``cosine_loss``: per-sample BCE(cos(v, a), y) (b,), with torch's log clamp at -100."""
    sim = F.cosine_similarity(vision_embeds, audio_embeds, dim=1)[:, None]  # (b, 1) in [0, 1]
    return F.binary_cross_entropy(sim, y.to(sim.dtype), reduction="none").squeeze(1)


def sync_loss(vision_embeds: torch.Tensor, audio_embeds: torch.Tensor) -> torch.Tensor:
    """Stage-2 sync loss: mean of -log cos(v, a) (BCE with every label 1)."""
    ones = torch.ones(vision_embeds.shape[0], 1, device=vision_embeds.device)
    return cosine_bce(vision_embeds, audio_embeds, ones).mean()


def sync_accuracy(vision_embeds: torch.Tensor, audio_embeds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of windows classified right, "in sync" iff cos > 0.5 (reference ``eval_syncnet_acc``)."""
    predicted = F.cosine_similarity(vision_embeds, audio_embeds, dim=1) > 0.5
    return (predicted == (y.flatten() > 0.5)).float().mean()


def mixed_noise(shape: tuple[int, ...], alpha: float, generators: list[torch.Generator],
                device: torch.device | str = "cpu") -> torch.Tensor:
    """PYoCo mixed noise for (b, c, f, h, w) latents, one generator per batch item.

    ``noise = sqrt(1 / (1 + a^2)) * independent + sqrt(a^2 / (1 + a^2)) * shared``, where ``shared`` is frame 0's
    draw repeated over all frames (unit variance in total; frames correlated by a^2 / (1 + a^2), 0.5 at a = 1).
    """
    b, c, f, h, w = shape
    if len(generators) != b:
        raise ValueError(f"need one generator per batch item: {b} items, {len(generators)} generators")
    out = []
    for generator in generators:
        shared = torch.randn((c, f, h, w), generator=generator) * math.sqrt(alpha**2 / (1 + alpha**2))
        shared = shared[:, 0:1].expand(c, f, h, w)
        independent = torch.randn((c, f, h, w), generator=generator) * math.sqrt(1 / (1 + alpha**2))
        out.append(independent + shared)
    return torch.stack(out).to(device)


def shared_noise(shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device | str = "cpu"
                 ) -> torch.Tensor:
    """Noise without mixing (``use_mixed_noise: false``): one draw of frame 0 repeated over the frames."""
    _, c, f, h, w = shape
    return torch.stack([torch.randn((c, 1, h, w), generator=g).expand(c, f, h, w) for g in generators]).to(device)


def sample_timesteps(generators: list[torch.Generator], device: torch.device | str = "cpu") -> torch.Tensor:
    """One timestep per batch item, uniform in [0, 1000) (shared by its frames): (b,) int64."""
    return torch.cat([torch.randint(0, NUM_TRAIN_TIMESTEPS, (1,), generator=g) for g in generators]).to(device)


def add_noise(latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor
              ) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for (b, c, f, h, w) tensors (diffusers ``add_noise``)."""
    abar = alphas_cumprod.to(latents.device)[timesteps].to(latents.dtype).view(-1, 1, 1, 1, 1)
    return abar.sqrt() * latents + (1 - abar).sqrt() * noise


def one_step_x0(noisy: torch.Tensor, pred_noise: torch.Tensor, timesteps: torch.Tensor,
                alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), no clipping (reference ``one_step_sampling``)."""
    abar = alphas_cumprod.to(noisy.device)[timesteps].to(pred_noise.dtype).view(-1, 1, 1, 1, 1)
    return (noisy - (1 - abar).sqrt() * pred_noise) / abar.sqrt()


def epsilon_mse(pred_noise: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Reconstruction loss: MSE over every latent element (whole frame), in float32."""
    return F.mse_loss(pred_noise.float(), noise.float())


def lower_half(frames: torch.Tensor) -> torch.Tensor:
    """Rows h/2 .. h-1 of (..., h, w) frames (the mouth half the sync and LPIPS losses look at)."""
    return frames[..., frames.shape[-2] // 2:, :]


def lpips_lower_half(lpips, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean LPIPS over ((b f), 3, h, w) frames, lower halves only, inputs in [-1, 1]."""
    return lpips(lower_half(pred).float(), lower_half(gt).float()).mean()


def syncnet_frames(pred: torch.Tensor, batch: int, resolution: int) -> torch.Tensor:
    """Decoded ((b f), 3, h, w) frames -> StableSyncNet input (b, 3f, res/2, res): bicubic resize when the UNet's
    resolution differs, frames stacked on channels, lower half."""
    if pred.shape[-1] != resolution:
        pred = F.interpolate(pred, size=(resolution, resolution), mode="bicubic", align_corners=False)
    return lower_half(rearrange(pred, "(b f) c h w -> b (f c) h w", b=batch))


def syncnet_latents(latents: torch.Tensor, lower_half_only: bool) -> torch.Tensor:
    """Scaled (b, c, f, h, w) latents -> latent-space StableSyncNet input (b, f*c, h, w), channel = frame * c +
    latent channel (the order its trainer encodes faces in); rows h/2.. when the net sees lower halves."""
    frames = rearrange(latents, "b c f h w -> b (f c) h w")
    return lower_half(frames) if lower_half_only else frames


def total_loss(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Weighted sum of the terms present (``weights`` keyed like ``terms``)."""
    return sum(weights[name] * value for name, value in terms.items())
