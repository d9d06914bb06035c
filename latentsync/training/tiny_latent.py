"""A tiny latent-space StableSyncNet (``syncnet_16_latent``'s topology at test widths) and its training YAML, for
tests and smoke runs over :func:`latentsync.tiny.write_tiny_checkpoints`' folder (whose tiny VAE encodes the faces).

Nothing here is used by real training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentsync.models.vae import VAE_DOWNSCALE, VAE_LATENT_CHANNELS
from latentsync.training.data import FRAMES_PER_WINDOW
from latentsync.training.tiny import TINY_SYNCNET_LEARNING_EMBED, write_tiny_syncnet_yaml

TINY_LATENT_RESOLUTION = 32  # 32 px whole faces -> 4 x 4 latents
TINY_LATENT_CHANNELS = FRAMES_PER_WINDOW * VAE_LATENT_CHANNELS  # 16 frames x 4 latent channels = 64, as the real one


def tiny_latent_syncnet_model_section(embed_channels: int = TINY_SYNCNET_LEARNING_EMBED) -> dict[str, Any]:
    """``syncnet_16_latent`` at tiny widths: the same six ResNet stages per tower, no attention, whole faces.

    Audio keeps the real strides (80x52 -> 40x52 -> 20x26 -> 10x13 -> 5x6 -> 2x3 -> 1x1); the visual tower takes
    the 4x4 latents of 32 px faces to 1x1 in its last stages (4 -> 4 -> 4 -> 4 -> 2 -> 2 -> 1). Only the output
    norm works at 1x1, on ``embed_channels``: GroupNorm (32 groups) over a 32-channel 1x1 map would see one value per
    group and output its bias whatever the input. ``embed_channels``: both towers' last width (see
    :data:`~latentsync.training.tiny.TINY_SYNCNET_LEARNING_EMBED`).
    """
    latent_side = TINY_LATENT_RESOLUTION // VAE_DOWNSCALE
    assert latent_side == 4, latent_side  # the visual strides below are for 4 x 4 latents
    audio = {"in_channels": 1, "block_out_channels": [32] * 5 + [embed_channels],
             "downsample_factors": [[2, 1], 2, 2, 2, 2, [2, 3]], "attn_blocks": [0] * 6}
    visual = {"in_channels": TINY_LATENT_CHANNELS, "block_out_channels": [32] * 5 + [embed_channels],
              "downsample_factors": [1, 1, 1, 2, 1, 2], "attn_blocks": [0] * 6}
    return {"audio_encoder": audio, "visual_encoder": visual, "lower_half": False, "pixel_space": False,
            "num_frames": FRAMES_PER_WINDOW, "resolution": TINY_LATENT_RESOLUTION}


def write_tiny_latent_syncnet_yaml(path: str | Path, checkpoints_dir: str | Path, fileslist: str | Path,
                                   output_dir: str | Path, **train: Any) -> Path:
    """A latent StableSyncNet training YAML (:func:`~latentsync.training.tiny.write_tiny_syncnet_yaml`'s defaults):
    the tiny net above, the VAE of ``checkpoints_dir`` (registry version 1.5, the config's default), 32 px clips."""
    return write_tiny_syncnet_yaml(path, fileslist, output_dir, model=tiny_latent_syncnet_model_section(),
                                   checkpoints_dir=str(checkpoints_dir), **train)
