"""The fixed inpainting mask over the aligned face: 1 = keep the original pixel, 0 = region to generate.

Drawn procedurally from the geometry the reference describes (README §4.6) on the 256×256 aligned face,
instead of shipping the official ``mask.png``:

* two side bands, rows 95–127, columns 9–77 and 178–246 (the cheeks beside the nose; the nose itself,
  columns 78–177, stays visible);
* from row 128 down, a U-shaped lower face: the lower half of a super-ellipse centred on the face's
  vertical axis (column 128) at row 127.5, half-width 119.5 px (columns 9–247 at row 128) and half-height
  115 px (ending after row 242), exponent 2.1 — fitted to the widths the reference gives at rows 200
  (33–223), 240 (104–160) and 242 (131–152).

Other resolutions are derived like the reference derives them from its 256 px PNG: an OpenCV Lanczos-4
resize of the 0/255 image, divided by 255 (soft edges at 512). The latent mask is that mask sampled every
8th pixel (``F.interpolate(..., mode="nearest")`` to res/8).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

MASK_BASE_RESOLUTION = 256  # the resolution the geometry below is drawn at (the official mask.png's size)
LATENT_DOWNSAMPLE = 8  # VAE downsampling factor: latent side = res / 8

# Side bands beside the nose (inclusive pixel ranges at 256 px).
BAND_ROWS = (95, 127)
BAND_COLUMNS = ((9, 77), (178, 246))
# Lower-face U: super-ellipse |dx / a|^p + |dy / b|^p <= 1 below its centre row.
U_FIRST_ROW = 128
U_CENTRE = (128.0, 127.5)  # (column, row)
U_HALF_WIDTH = 119.5
U_HALF_HEIGHT = 115.0
U_EXPONENT = 2.1


@functools.lru_cache(maxsize=1)
def _base_mask_u8() -> np.ndarray:
    """The 256×256 uint8 mask (255 = keep, 0 = generate), drawn from the constants above."""
    rows, cols = np.mgrid[0:MASK_BASE_RESOLUTION, 0:MASK_BASE_RESOLUTION].astype(np.float64)
    in_band_rows = (rows >= BAND_ROWS[0]) & (rows <= BAND_ROWS[1])
    in_band_cols = np.zeros_like(in_band_rows)
    for first, last in BAND_COLUMNS:
        in_band_cols |= (cols >= first) & (cols <= last)
    dx = np.abs(cols - U_CENTRE[0]) / U_HALF_WIDTH
    dy = np.clip(rows - U_CENTRE[1], 0, None) / U_HALF_HEIGHT
    in_u = (rows >= U_FIRST_ROW) & (dx**U_EXPONENT + dy**U_EXPONENT <= 1.0)
    generate = (in_band_rows & in_band_cols) | in_u
    mask = np.where(generate, 0, 255).astype(np.uint8)
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
        base = cv2.resize(
            base, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4
        )  # saturates to 0–255
    return base.astype(np.float32) / 255.0


def latent_mask(resolution: int) -> np.ndarray:
    """(res/8, res/8) float32: :func:`mouth_mask` sampled like the reference's nearest downsampling."""
    return np.ascontiguousarray(mouth_mask(resolution)[::LATENT_DOWNSAMPLE, ::LATENT_DOWNSAMPLE])
