"""The fixed inpainting mask over the aligned face: 1 = keep the original pixel, 0 = region to generate.

The pixels are the reference's own ``mask.png`` (README §4.6), shipped as ``reference_mask.png`` beside this
module (ByteDance, Apache-2.0: see ``NOTICE`` here). The UNet was trained with exactly this mask, so any other
shape, however close, shows it inputs it never saw. At 256×256 it is binary: two side bands beside the nose
(rows 95–127) and a U-shaped lower face from row 128 to 242.

Other resolutions are derived as the reference derives them (``load_fixed_mask``): an OpenCV Lanczos-4 resize
of the 0/255 uint8 image (saturating to 0–255), divided by 255, which gives soft edges at 512. The latent mask
is that mask sampled every 8th pixel (``F.interpolate(..., mode="nearest")`` to res/8).
"""

from __future__ import annotations

import functools
from importlib import resources

import cv2
import numpy as np

MASK_BASE_RESOLUTION = 256  # the shipped mask's side (the reference's mask.png)
MASK_FILE = "reference_mask.png"  # package data of latentsync.faces
LATENT_DOWNSAMPLE = 8  # VAE downsampling factor: latent side = res / 8


@functools.lru_cache(maxsize=1)
def _base_mask_u8() -> np.ndarray:
    """The 256×256 uint8 mask (255 = keep, 0 = generate), read from the package."""
    data = resources.files("latentsync.faces").joinpath(MASK_FILE).read_bytes()
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None or mask.shape != (MASK_BASE_RESOLUTION, MASK_BASE_RESOLUTION):
        raise RuntimeError(f"the packaged {MASK_FILE} is missing or damaged; reinstall latentsync")
    mask.setflags(write=False)
    return mask


def _check_resolution(resolution: int) -> int:
    if not isinstance(resolution, (int, np.integer)) or resolution <= 0 or resolution % LATENT_DOWNSAMPLE:
        raise ValueError(f"resolution must be a positive multiple of {LATENT_DOWNSAMPLE}, got {resolution!r}")
    return int(resolution)


def mouth_mask(resolution: int) -> np.ndarray:
    """(res, res) float32 in [0, 1]: 1 = keep the original face pixel, 0 = generate."""
    resolution = _check_resolution(resolution)
    base = _base_mask_u8()
    if resolution != MASK_BASE_RESOLUTION:
        # cv2.resize on uint8 saturates to 0–255, as the reference's resize of the PNG it reads.
        base = cv2.resize(base, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
    return base.astype(np.float32) / 255.0


def latent_mask(resolution: int) -> np.ndarray:
    """(res/8, res/8) float32: :func:`mouth_mask` sampled like the reference's nearest downsampling."""
    return np.ascontiguousarray(mouth_mask(resolution)[::LATENT_DOWNSAMPLE, ::LATENT_DOWNSAMPLE])
