"""Which torch device and dtype to run on: parsed from the user's names and checked to work on this machine.

A leaf (torch and :mod:`latentsync.errors` only), so that every entry point (the CLIs, the batch runner, the data
toolchain, the Sync-C scorer) checks ``--device`` / ``--dtype`` up front without importing the model loader
(:mod:`latentsync.inference.loading`).
"""

from __future__ import annotations

import torch

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
