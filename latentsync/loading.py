"""``load_pipeline``: resolve a version's checkpoints and build the pipeline, once per process."""

from __future__ import annotations

import os

import torch

from latentsync.checkpoints import resolve_checkpoints, resolve_syncnet_v2
from latentsync.errors import InputError


DEVICE_HINT = "use cpu, cuda, cuda:N (N = GPU number) or mps"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(name: str | torch.device | None) -> torch.device:
    """The torch device for ``name`` (None: CUDA when available, else the CPU).

    Raises :class:`InputError` for a device that cannot be used here: an unknown name, CUDA or MPS when this machine
    or this PyTorch build has none, a GPU number that does not exist.
    """
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {str(name)!r}; {DEVICE_HINT}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise InputError(f"device {str(name)!r} was asked for but CUDA is not available ({why}); use cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"device {str(name)!r} does not exist: {count} CUDA GPU(s) visible, cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device {str(name)!r} was asked for but Apple's MPS is not available here; use cpu")
    elif device.type != "cpu":
        raise InputError(f"device type {device.type!r} is not supported; {DEVICE_HINT}")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """The reference's rule: float16 on CUDA GPUs of compute capability 8 or newer, else float32."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.float16
    return torch.float32


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the models cannot run in ``dtype`` on ``device`` with this PyTorch (None: they can).

    Runs each kind of operation the networks use once on a tiny tensor: some builds lack half-precision CPU kernels,
    and old GPUs lack bfloat16.
    """
    if dtype == torch.float32:
        return None
    F = torch.nn.functional
    try:
        x = torch.ones(1, 8, 4, 4, device=device, dtype=dtype)
        x = F.conv2d(x, torch.ones(8, 8, 3, 3, device=device, dtype=dtype), padding=1)  # UNet, VAE
        x = F.silu(F.group_norm(x, 4))
        tokens = F.gelu(F.layer_norm(x.flatten(2), (16,)))  # (1, 8, 16)
        F.softmax(tokens @ tokens.transpose(1, 2), dim=-1)  # attention
        F.conv1d(tokens, torch.ones(8, 8, 3, device=device, dtype=dtype), padding=1)  # Whisper's stem
        F.interpolate(x, scale_factor=2.0, mode="nearest")  # upsampling
    except (RuntimeError, NotImplementedError) as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return None


def parse_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The weights' dtype for ``name`` ("auto" or None: :func:`default_dtype`); :class:`InputError` if unknown or
    unsupported on ``device``."""
    if name is None or name == "auto":
        return default_dtype(device)
    if isinstance(name, torch.dtype):
        dtype = name
    else:
        try:
            dtype = DTYPES[name]
        except KeyError:
            raise InputError(f"unknown dtype {name!r}; available: auto, {', '.join(DTYPES)}") from None
    problem = dtype_problem(device, dtype)
    if problem is not None:
        label = next((key for key, value in DTYPES.items() if value == dtype), str(dtype))
        raise InputError(f"{label} does not run on {device} with this PyTorch ({problem}); use float32 (or auto)")
    return dtype


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
    """Build a :class:`~latentsync.pipeline.LipSyncPipeline` for LatentSync ``version`` ("1.5" or "1.6").

    Weights come from ``checkpoints_dir`` (or ``$LATENTSYNC_CHECKPOINTS``) when given, else from the Hugging Face
    Hub cache, downloading on first use. ``device`` defaults to CUDA when available; ``dtype`` to the reference's
    choice (float16 on Ampere or newer GPUs, else float32); either one that cannot run here raises
    :class:`~latentsync.errors.InputError` (see :func:`parse_device`, :func:`parse_dtype`). ``sync_scores`` also
    loads the original SyncNet so that ``LipSyncOptions(score_sync=True)`` can report Sync-C / Sync-D before and after.
    ``revision`` (a branch, tag or commit of the version's Hub repo) overrides the registry's pinned revision.
    ``compile`` wraps the UNet in ``torch.compile`` (:func:`latentsync.compile.compile_unet`): the first windows of
    each shape compile (minutes), later ones run faster; it speeds up the plain path (``cache_interval=1``), since
    step caching calls the UNet's blocks itself. A device where Inductor cannot run raises InputError.
    """
    from latentsync.faces import load_landmark_backend
    from latentsync.models.unet_checkpoint import load_unet_checkpoint
    from latentsync.models.unet_config import UNetConfig
    from latentsync.models.vae import LatentVae
    from latentsync.models.whisper import WhisperAudioEncoder
    from latentsync.pipeline import LipSyncPipeline
    from latentsync.sync import SyncScorer

    device = parse_device(device)  # a device or dtype that cannot work here is an InputError, before any file is read
    dtype = parse_dtype(dtype, device)
    paths = resolve_checkpoints(version, checkpoints_dir, revision=revision)
    syncnet_path = resolve_syncnet_v2(version, checkpoints_dir, revision=revision) if sync_scores else None
    preset = UNetConfig.latentsync_16() if paths.resolution == 512 else UNetConfig.latentsync_15()
    config = UNetConfig.from_dict({**preset.to_dict(), **paths.settings.unet}) if paths.settings.unet else preset
    if compile:
        from latentsync.compile import inductor_problem

        problem = inductor_problem(device)
        if problem is not None:
            raise InputError(f"compile: torch.compile cannot run on {device}: {problem}")
    unet = load_unet_checkpoint(paths.unet, config, device, dtype)
    if compile:
        from latentsync.compile import compile_unet

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
    )
