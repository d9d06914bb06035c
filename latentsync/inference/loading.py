"""``load_pipeline``: resolve a version's checkpoints and build the pipeline, once per process."""

from __future__ import annotations

import functools
import os

import torch

from latentsync.checkpoints import resolve_checkpoints, resolve_syncnet_v2
from latentsync.devices import parse_device, parse_dtype
from latentsync.errors import InputError


def load_pipeline(
    version: str = "1.5",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    checkpoints_dir: str | os.PathLike | None = None,
    sync_scores: bool = False,
    *,
    revision: str | None = None,
    compile: bool = False,  # noqa: A002 -- the natural name of the option (torch.compile)
):
    """Build a :class:`~latentsync.inference.pipeline.LipSyncPipeline` for LatentSync ``version`` ("1.5" or "1.6").

    Weights come from ``checkpoints_dir`` (or ``$LATENTSYNC_CHECKPOINTS``) when given, else from the Hugging Face
    Hub cache, downloading on first use. ``device`` defaults to CUDA when available; ``dtype`` to the reference's
    choice (float16 on Ampere or newer GPUs, else float32); either one that cannot run here raises
    :class:`~latentsync.errors.InputError` (see :func:`parse_device`, :func:`parse_dtype`). ``sync_scores`` also
    loads the original SyncNet so that ``LipSyncOptions(score_sync=True)`` can report Sync-C / Sync-D before and after.
    ``revision`` (a branch, tag or commit of the version's Hub repo) overrides the registry's pinned revision.
    ``compile`` wraps the UNet in ``torch.compile`` (:func:`latentsync.inference.compile.compile_unet`): the first windows of
    each shape compile (minutes), later ones run faster; it speeds up the plain path (``cache_interval=1``), since
    step caching calls the UNet's blocks itself. A device where Inductor cannot run raises InputError.
    """
    from latentsync.faces import load_landmark_backend
    from latentsync.faces.restore import LazyRestorer
    from latentsync.lazy import Lazy
    from latentsync.models.unet_checkpoint import load_unet_checkpoint
    from latentsync.models.unet_config import UNetConfig
    from latentsync.models.vae import LatentVae
    from latentsync.models.whisper import WhisperAudioEncoder
    from latentsync.inference.pipeline import LipSyncPipeline
    from latentsync.sync import SyncScorer

    device = parse_device(device)  # a device or dtype that cannot work here is an InputError, before any file is read
    dtype = parse_dtype(dtype, device)
    paths = resolve_checkpoints(version, checkpoints_dir, revision=revision)
    syncnet_path = resolve_syncnet_v2(version, checkpoints_dir, revision=revision) if sync_scores else None
    preset = UNetConfig.latentsync_16() if paths.resolution == 512 else UNetConfig.latentsync_15()
    config = UNetConfig.from_dict({**preset.to_dict(), **paths.settings.unet}) if paths.settings.unet else preset
    if compile:
        from latentsync.inference.compile import inductor_problem

        problem = inductor_problem(device)
        if problem is not None:
            raise InputError(f"compile: torch.compile cannot run on {device}: {problem}")
    unet = load_unet_checkpoint(paths.unet, config, device, dtype)
    if compile:
        from latentsync.inference.compile import compile_unet

        unet = compile_unet(unet)
    return LipSyncPipeline(
        unet=unet,
        audio_encoder=WhisperAudioEncoder.from_checkpoint(paths.whisper, device, dtype),
        vae=LatentVae.from_pretrained(paths.vae_dir, device, dtype),
        face_backend=load_landmark_backend(paths.face_backend, device=device, weights_dir=paths.face_weights_dir),
        resolution=paths.resolution,
        device=device,
        dtype=dtype,
        version=version,
        sync_scorer=SyncScorer.from_checkpoint(syncnet_path, device) if syncnet_path else None,
        face_restorer=LazyRestorer(functools.partial(load_face_restorer, checkpoints_dir, device)),
        speaker_scorer=Lazy(functools.partial(load_speaker_scorer, version, checkpoints_dir, device, revision)),
    )


def load_speaker_scorer(version: str = "1.5", checkpoints_dir: str | os.PathLike | None = None,
                        device: str | torch.device = "cpu", revision: str | None = None):  # fmt: skip
    """The original SyncNet (:class:`~latentsync.sync.SyncScorer`) that finds who speaks for ``speakers="auto"``:
    ``auxiliary/syncnet_v2.model`` of ``checkpoints_dir`` (or ``$LATENTSYNC_CHECKPOINTS``), else the Hub cache,
    downloading it once."""
    from latentsync.sync import SyncScorer

    return SyncScorer.from_checkpoint(resolve_syncnet_v2(version, checkpoints_dir, revision=revision), device)


def load_face_restorer(checkpoints_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """The face restorer (GFPGAN v1.4, :class:`~latentsync.faces.restore.FaceRestorer`) from ``auxiliary/GFPGANv1.4.pth``
    of ``checkpoints_dir`` (or ``$LATENTSYNC_CHECKPOINTS``), else the download cache, else its release URL (once,
    SHA-256 checked). It runs in float32 whatever the pipeline's dtype."""
    from latentsync.checkpoints import resolve_release_file
    from latentsync.faces.restore import FaceRestorer
    from latentsync.models.gfpgan import load_gfpgan

    return FaceRestorer(load_gfpgan(resolve_release_file("gfpgan_v1.4", checkpoints_dir), device=device))
