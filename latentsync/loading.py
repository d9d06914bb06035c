"""``load_pipeline``: resolve a version's checkpoints and build the pipeline, once per process."""

from __future__ import annotations

import os

import torch

from latentsync.checkpoints import resolve_checkpoints, resolve_syncnet_v2


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """The reference's rule: float16 on CUDA GPUs of compute capability 8 or newer, else float32."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.float16
    return torch.float32


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if name is None or name == "auto":
        return default_dtype(device)
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; available: auto, {', '.join(DTYPES)}") from None


def load_pipeline(
    version: str = "1.5",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    checkpoints_dir: str | os.PathLike | None = None,
    sync_scores: bool = False,
):
    """Build a :class:`~latentsync.pipeline.LipSyncPipeline` for LatentSync ``version`` ("1.5" or "1.6").

    Weights come from ``checkpoints_dir`` (or ``$LATENTSYNC_CHECKPOINTS``) when given, else from the Hugging Face
    Hub cache, downloading on first use. ``device`` defaults to CUDA when available; ``dtype`` to the reference's
    choice (float16 on Ampere or newer GPUs, else float32). ``sync_scores`` also loads the original SyncNet so that
    ``LipSyncOptions(score_sync=True)`` can report Sync-C / Sync-D before and after.
    """
    from latentsync.faces import load_landmark_backend
    from latentsync.models.unet_checkpoint import load_unet_checkpoint
    from latentsync.models.unet_config import UNetConfig
    from latentsync.models.vae import LatentVae
    from latentsync.models.whisper import WhisperAudioEncoder
    from latentsync.pipeline import LipSyncPipeline
    from latentsync.sync import SyncScorer

    paths = resolve_checkpoints(version, checkpoints_dir)
    syncnet_path = resolve_syncnet_v2(version, checkpoints_dir) if sync_scores else None
    device = torch.device(device) if device is not None else default_device()
    dtype = parse_dtype(dtype, device)
    preset = UNetConfig.latentsync_16() if paths.resolution == 512 else UNetConfig.latentsync_15()
    config = UNetConfig.from_dict({**preset.to_dict(), **paths.settings.unet}) if paths.settings.unet else preset
    return LipSyncPipeline(
        unet=load_unet_checkpoint(paths.unet, config, device, dtype),
        audio_encoder=WhisperAudioEncoder.from_checkpoint(paths.whisper, device, dtype),
        vae=LatentVae.from_pretrained(paths.vae_dir, device, dtype),
        face_backend=load_landmark_backend(paths.face_backend, device=device, weights_dir=paths.face_weights_dir),
        resolution=paths.resolution,
        device=device,
        dtype=dtype,
        version=version,
        sync_scorer=SyncScorer.from_checkpoint(syncnet_path, device) if syncnet_path else None,
    )
