"""Paste generated faces back into the original frames (README §4.10, ``AlignRestore.restore_img``).

Per frame: the crop-size face is warped back into the frame with the inverse of its alignment matrix
(bilinear, grey 127 outside the crop), mapped from [−1, 1] to pixels; a coverage mask (the crop rectangle
warped the same way) is eroded by 2×2 (→ ``m1``), eroded again by a (2·w_edge)² square with
``w_edge = int(√Σm1) // 20`` and Gaussian-blurred with a (2·w_edge + 1)² kernel (σ as OpenCV's automatic
σ for that size) into a soft mask ``s``; the frame becomes ``s · m1 · face + (1 − s) · frame``, truncated to
uint8. No colour correction.

All of this only touches a window around the warped crop: ``s`` is exactly 0 outside the crop's footprint,
so every other pixel is copied unchanged (byte-identical). The window keeps a margin wide enough that the
erosions and the blur's reflected border see the same zeros they would see in the full frame.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from latentsync.faces.alignment import (
    BORDER_FILL,
    WARP_MARGIN,
    _check_frames_and_matrices,
    _invert,
    geometry_for,
    sample_bilinear,
    sample_bilinear_batch,
)

EDGE_FRACTION = 20  # w_edge = int(sqrt(face area in pixels)) // EDGE_FRACTION (reference constant)
FIRST_EROSION = 2  # side of the square that erodes the warped coverage mask first (kornia erosion, 2×2)
# As in alignment.WARP_BATCHED_ON_CPU: on the CPU the per-frame warp is faster than one batched grid_sample
# (16 frames of 640×480, CPU time on one thread: per frame 13.5 / 19.5 ms, batched 18 / 52 ms at 256 / 512), so
# it stays per frame there; with faces on a GPU the warp is one batched grid_sample and one transfer back per
# chunk, and only the OpenCV morphology and blend stay per frame.
PASTE_BATCHED_ON_CPU = False


def _opencv_auto_sigma(kernel_size: int) -> float:
    """σ that OpenCV derives for a Gaussian kernel of this size (the reference passes it explicitly)."""
    return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


def _frame_window(frame_to_crop: np.ndarray, crop_w: int, crop_h: int, width: int, height: int, margin: int):
    """End-exclusive, clipped frame box (x0, y0, x1, y1) around every pixel whose crop position lies in the
    open square (−1, crop_w) × (−1, crop_h), where bilinear sampling of the crop is non-zero, plus
    ``margin``."""
    crop_to_frame = _invert(frame_to_crop)
    corners = np.array([[-1, -1, 1], [crop_w, -1, 1], [-1, crop_h, 1], [crop_w, crop_h, 1]], np.float64)
    mapped = corners @ crop_to_frame.T  # (4, 2) frame coordinates
    x0 = int(np.clip(np.floor(mapped[:, 0].min()) - margin, 0, width))
    y0 = int(np.clip(np.floor(mapped[:, 1].min()) - margin, 0, height))
    x1 = int(np.clip(np.ceil(mapped[:, 0].max()) + margin + 1, 0, width))
    y1 = int(np.clip(np.ceil(mapped[:, 1].max()) + margin + 1, 0, height))
    return x0, y0, x1, y1


def _erode(mask: np.ndarray, size: int) -> np.ndarray:
    """Min over the size×size window [y − size/2, y + size/2 − 1] (OpenCV's anchor for even sizes, which is
    also kornia's origin for the 2×2 case); the outside of the image never erodes (geodesic border)."""
    return cv2.erode(mask, np.ones((size, size), np.uint8))


def _to_pixels(sampled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warped (…, 4, h, w) face + coverage → face pixels (…, h, w, 3) float32 in [0, 255] with the grey fill
    blended in (kornia's "fill"), and the coverage (…, h, w)."""
    coverage = sampled[..., 3:, :, :]  # warped all-ones crop, zero padding
    face_px = (sampled[..., :3, :, :] + (1.0 - coverage) * BORDER_FILL) / 2 + 0.5
    return (face_px.clamp(0, 1) * 255).movedim(-3, -1), coverage[..., 0, :, :]


def _warp_per_frame(faces: list[torch.Tensor], matrices: np.ndarray, windows: np.ndarray) -> list:
    """One bilinear pass per frame: (face pixels (h, w, 3), coverage (h, w)) numpy float32 per window."""
    warped = []
    for face, matrix, (x0, y0, x1, y1) in zip(faces, matrices, windows):
        layers = torch.cat([face.float(), torch.ones_like(face[:1], dtype=torch.float32)])  # (4, ch, cw)
        face_px, coverage = _to_pixels(sample_bilinear(layers, matrix, y1 - y0, x1 - x0, offset=(x0, y0)))
        warped.append((face_px.cpu().numpy(), coverage.cpu().numpy()))
    return warped


def _warp_batched(faces: torch.Tensor, matrices: np.ndarray, windows: np.ndarray) -> list:
    """:func:`_warp_per_frame` as one grid_sample over windows padded to the largest, and one transfer."""
    sizes = windows[:, 2:] - windows[:, :2]  # (n, 2) width, height (all > 0 here)
    win_w, win_h = int(sizes[:, 0].max()), int(sizes[:, 1].max())
    layers = torch.cat(
        [faces.float(), torch.ones_like(faces[:, :1], dtype=torch.float32)], dim=1
    )  # (n, 4, ch, cw)
    sampled = sample_bilinear_batch(layers, matrices, win_h, win_w, offsets=windows[:, :2])  # (n, 4, h, w)
    face_px, coverage = (t.cpu().numpy() for t in _to_pixels(sampled))  # (n, h, w, 3), (n, h, w)
    return [(face_px[i, :h, :w], coverage[i, :h, :w]) for i, (w, h) in enumerate(sizes)]


def paste_crop_faces(
    frames: np.ndarray, crop_faces: torch.Tensor | np.ndarray, matrices: np.ndarray
) -> np.ndarray:
    """Frames (n, H, W, 3) uint8 + crop-size faces (n, 3, crop_h, crop_w) float in [−1, 1] + frame-to-crop
    matrices (n, 2, 3) → new frames (n, H, W, 3) uint8. The input frames are not modified.

    The warp runs in torch on the faces' device; the morphology and blur run with OpenCV on the CPU.
    """
    frames, matrices = _check_frames_and_matrices(frames, matrices)
    faces = torch.as_tensor(crop_faces)
    if faces.ndim != 4 or faces.shape[0] != frames.shape[0] or faces.shape[1] != 3:
        raise ValueError(f"faces must be ({frames.shape[0]}, 3, crop_h, crop_w), got {tuple(faces.shape)}")
    crop_h, crop_w = faces.shape[2:]
    height, width = frames.shape[1:3]
    out = frames.copy()
    windows = np.array(
        [_frame_window(m, crop_w, crop_h, width, height, WARP_MARGIN) for m in matrices], dtype=np.int64
    ).reshape(-1, 4)
    todo = np.flatnonzero(
        (windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1])
    )  # others: off-frame
    if todo.size == 0:
        return out
    # 1. Warp each face and its coverage together (one bilinear pass) into its frame window.
    if PASTE_BATCHED_ON_CPU or faces.device.type != "cpu":
        # Index the faces only when some are skipped: a copy of a whole chunk at 512 is ~45 MB.
        chosen = faces if todo.size == faces.shape[0] else faces[torch.as_tensor(todo, device=faces.device)]
        warped = _warp_batched(chosen, matrices[todo], windows[todo])
    else:
        warped = _warp_per_frame([faces[i] for i in todo], matrices[todo], windows[todo])
    for i, (face_px, coverage), (x0, y0, x1, y1) in zip(todo, warped, windows[todo]):
        # 2. Masks: erode 2×2 → m1; erode (2·w_edge)² → blur (2·w_edge + 1)² → soft mask.
        m1 = _erode(np.ascontiguousarray(coverage, dtype=np.float32), FIRST_EROSION)
        w_edge = int(float(m1.sum(dtype=np.float64)) ** 0.5) // EDGE_FRACTION
        soft = m1
        if w_edge > 0:  # faces under 20×20 px would get an empty kernel: keep the hard mask
            kernel = 2 * w_edge + 1
            sigma = _opencv_auto_sigma(kernel)
            soft = cv2.GaussianBlur(
                _erode(m1, 2 * w_edge),
                (kernel, kernel),
                sigmaX=sigma,
                sigmaY=sigma,
                borderType=cv2.BORDER_REFLECT_101,
            )

        # 3. Blend and truncate (the reference casts to uint8 without rounding).
        soft = soft[..., None]  # (h, w, 1)
        region = out[i, y0:y1, x0:x1].astype(np.float32)
        blended = soft * (m1[..., None] * face_px) + (1.0 - soft) * region
        out[i, y0:y1, x0:x1] = np.clip(blended, 0, 255).astype(np.uint8)
    return out


def resize_faces_to_crop(faces: torch.Tensor | np.ndarray, crop_size: tuple[int, int]) -> torch.Tensor:
    """Model faces (n, 3, res, res) → (n, 3, crop_h, crop_w) float32 with bicubic + antialias, which is what
    ``torchvision.transforms.functional.resize(..., BICUBIC, antialias=True)`` computes for float tensors."""
    faces = torch.as_tensor(faces).float()
    crop_w, crop_h = crop_size
    return F.interpolate(faces, size=(crop_h, crop_w), mode="bicubic", antialias=True, align_corners=False)


def paste_back(frames: np.ndarray, faces: torch.Tensor | np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Frames (n, H, W, 3) uint8 + model faces (n, 3, res, res) float in [−1, 1] + matrices (n, 2, 3) → new
    uint8 frames with the faces blended in (§4.10). Pixels outside each warped crop are byte-identical."""
    faces = torch.as_tensor(faces)
    if faces.ndim != 4 or faces.shape[2] != faces.shape[3]:
        raise ValueError(f"faces must be (n, 3, res, res), got {tuple(faces.shape)}")
    geometry = geometry_for(int(faces.shape[-1]))
    return paste_crop_faces(frames, resize_faces_to_crop(faces, geometry.crop_size), matrices)
