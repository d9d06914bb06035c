"""Neural networks of LatentSync: the audio-conditioned 3-D UNet (``unet*``), Whisper audio encoder and VAE.

Importing this package is cheap: the UNet names below are resolved lazily on first use (they pull in torch and
diffusers), and the Whisper / VAE modules are imported from their own submodules.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_LAZY_EXPORTS = {
    "UNetConfig": "latentsync.models.unet_config",
    "MotionModuleConfig": "latentsync.models.unet_config",
    "tiny_unet_config": "latentsync.models.unet_config",
    "LatentSyncUNet": "latentsync.models.unet",
    "load_unet_checkpoint": "latentsync.models.unet_checkpoint",
    "save_unet_checkpoint": "latentsync.models.unet_checkpoint",
}

__all__ = sorted(_LAZY_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module 'latentsync.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
