"""Tiny random-weight checkpoints in the official on-disk formats, for tests, benchmarks and the app's smoke mode.

:func:`write_tiny_checkpoints` fills a directory laid out exactly like a real one (see :mod:`latentsync.checkpoints`)
with the real architectures at tiny widths: the tiny-golden UNet (3.6 M parameters), a 4-layer Whisper encoder in
OpenAI's format, a small diffusers VAE, and the (already small) original SyncNet for sync scores. Loading it goes through the same code as the real weights. Faces are found
with the dlib backend (real weights shipped in a PyPI package), so the face geometry is real; the generated mouths
are noise-driven nonsense, which is why the app shows a banner in this mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from latentsync.checkpoints import LOCAL_CONFIG_NAME, get_version

TINY_RESOLUTION = 256  # the real 1.5 face geometry (210x280 crop, 32x32 latents) with tiny networks
TINY_FACE_BACKEND = "dlib"


def random_syncnet_v2_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """``syncnet_v2.model``-shaped random weights, well scaled (BatchNorm variances positive, scales near 1)."""
    from latentsync.sync.syncnet import SyncNetV2

    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in SyncNetV2().state_dict().items()}
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros(shape, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) > 1:  # conv / linear weights: keep activations at their input scale
            state[name] = torch.randn(shape, generator=generator) / shape[1:].numel() ** 0.5
        elif name.endswith("weight"):  # BatchNorm scales near 1, so signals neither vanish nor blow up
            state[name] = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[name] = 0.1 * torch.randn(shape, generator=generator)
    return state


def write_random_syncnet_v2(path: str | Path, seed: int = 0) -> Path:
    """The original SyncNet (full size, 13.6 M parameters: it is small) with random weights, as a plain state_dict."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_syncnet_v2_state_dict(seed), path)
    return path


def write_tiny_checkpoints(directory: str | Path, seed: int = 0, version: str = "1.5") -> Path:
    """Write a complete tiny checkpoint directory for ``version``'s layout; returns the directory."""
    from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
    from latentsync.models.unet_checkpoint import save_unet_checkpoint
    from latentsync.models.unet_config import tiny_unet_config
    from latentsync.models.vae import save_random_tiny_vae
    from latentsync.models.whisper import tiny_whisper_dims, write_random_whisper_checkpoint

    directory = Path(directory)
    spec = get_version(version)
    dims = tiny_whisper_dims()
    unet_config = tiny_unet_config().to_dict()
    unet_config.update(cross_attention_dim=dims["n_audio_state"], resolution=TINY_RESOLUTION)

    from latentsync.models.unet_config import UNetConfig

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # module construction draws default initialisations from the global generator
    unet = randomize_zero_init_(LatentSyncUNet(UNetConfig.from_dict(unet_config)), generator)
    (directory / spec.unet.local_path).parent.mkdir(parents=True, exist_ok=True)
    save_unet_checkpoint(unet, directory / spec.unet.local_path)
    write_random_whisper_checkpoint(directory / spec.whisper.local_path, dims, seed=seed + 1)
    save_random_tiny_vae(directory / Path(spec.vae[0].local_path).parent, seed=seed + 2)
    write_random_syncnet_v2(directory / spec.syncnet_v2.local_path, seed=seed + 3)
    settings = {"unet": unet_config, "resolution": TINY_RESOLUTION, "face_backend": TINY_FACE_BACKEND}
    (directory / LOCAL_CONFIG_NAME).write_text(json.dumps(settings, indent=1))
    return directory
