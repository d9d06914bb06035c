"""Face alignment: 3 anchor points → the reference's similarity transform → a warped, resized face crop.

README §4.5 steps 2–6. The official ``AlignRestore`` maps three points (the two brow centres and the nose
centre) onto a fixed template with a least-squares similarity transform, adds a quirky exponentially
smoothed "bias" to the translation, warps the frame to a 3:4 crop (210×280 at 256) with bilinear sampling
and a grey (127) border, truncates to uint8 and squeezes the crop to a square with Lanczos.

Conventions: a matrix ``M`` (2, 3) maps *frame* pixel coordinates to *crop* pixel coordinates
(``crop = M · [x, y, 1]``), pixel centres at integer coordinates (kornia's ``align_corners=True``, which is
also OpenCV's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# iBUG-68 index groups for the three anchor points. The reference (§4.5 step 2) averages InsightFace-106
# points of each brow and of the nose; LatentSync 1.0 (and 1.5 at release, §2.1) used face-alignment's 68
# points with exactly these groups: each brow's 5 points and all 9 nose points (bridge 27–30, base 31–35).
BROW_IMAGE_LEFT = slice(17, 22)  # subject's right brow, on the image's left: template point 0
BROW_IMAGE_RIGHT = slice(22, 27)  # subject's left brow, on the image's right: template point 1
NOSE = slice(27, 36)  # template point 2
NUM_LANDMARKS = 68

# The template in "template units" (§4.5 step 3); scaled by TEMPLATE_SCALE_AT_256 · res / 256 into pixels.
TEMPLATE_UNITS = ((17.0, 20.0), (58.0, 20.0), (37.5, 40.0))  # brow L, brow R, nose (x, y)
CROP_UNITS_WH = (75.0, 100.0)  # crop width and height in template units (3:4, taller than wide)
TEMPLATE_SCALE_AT_256 = 2.8  # pixels per template unit at resolution 256 → 210×280 crop
REFERENCE_RESOLUTION = 256  # the resolution at which TEMPLATE_SCALE_AT_256 holds

BIAS_MEMORY = 0.2  # p_bias ← BIAS_MEMORY · previous + (1 − BIAS_MEMORY) · current (§4.5 step 4)
BORDER_FILL = 127.0  # grey that fills crop pixels sampled from outside the frame (§4.5 step 5)
WARP_MARGIN = 2  # pixels of context kept around a warp's source region (bilinear reads one beyond)
# Smallest spread (unbiased std over the 6 coordinates, in pixels) of three anchor points that defines a
# similarity transform. A usable face (≥ 50 px wide) spreads them over ≥ ~10 px; at 1 px the crop would be
# magnified ~50× and, at 0 (all points equal), the normalisation divides by zero and the SVD fails.
MIN_ANCHOR_SPREAD = 1.0
# warp_to_crop on the CPU stays per frame: one grid_sample over the whole chunk was slower there (16 frames of
# 640×480, CPU time on one thread: per frame 16.5 / 62 ms, batched 19 / 172 ms at 256 / 512; the chunk's float64
# grid and float32 output no longer fit in cache). Other devices (GPU) get the batched path: one transfer and one
# grid_sample per chunk instead of one small kernel launch and synchronising copy per frame.
WARP_BATCHED_ON_CPU = False


@dataclass(frozen=True)
class AlignmentGeometry:
    """Template and crop size for one face resolution (256 → 210×280 crop, 512 → 420×560)."""

    resolution: int  # side of the square face the model sees
    template: np.ndarray  # (3, 2) float32 target positions of brow L, brow R, nose in crop pixels
    crop_size: tuple[int, int]  # (width, height) of the pre-resize crop

    @property
    def crop_width(self) -> int:
        return self.crop_size[0]

    @property
    def crop_height(self) -> int:
        return self.crop_size[1]


def geometry_for(resolution: int) -> AlignmentGeometry:
    """The reference template and crop size at ``resolution`` (a multiple of 8; 256 and 512 in use)."""
    if not isinstance(resolution, (int, np.integer)) or resolution <= 0 or resolution % 8:
        raise ValueError(f"resolution must be a positive multiple of 8 (256 or 512), got {resolution!r}")
    scale = resolution / REFERENCE_RESOLUTION * TEMPLATE_SCALE_AT_256  # pixels per template unit
    template = np.asarray(TEMPLATE_UNITS, dtype=np.float64) * scale
    # The reference truncates with int(); round() gives the same 210×280 / 420×560 and is immune to 209.999….
    crop = (round(CROP_UNITS_WH[0] * scale), round(CROP_UNITS_WH[1] * scale))
    return AlignmentGeometry(int(resolution), template.astype(np.float32), crop)


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """iBUG-68 landmarks (N, 68, 2) → anchor points (N, 3, 2) float32: image-left brow, image-right brow,
    nose.

    Unlike the reference, points are not rounded to whole pixels: rounding only adds ±0.5 px jitter to
    smoothed landmarks. NaN rows (frames without a face) stay NaN.
    """
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be (N, {NUM_LANDMARKS}, 2), got shape {landmarks.shape}")
    groups = (BROW_IMAGE_LEFT, BROW_IMAGE_RIGHT, NOSE)
    return np.stack([landmarks[:, group].mean(axis=1) for group in groups], axis=1)  # (N, 3, 2)


def _normalise(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 3, 2) → centred points divided by their global unbiased std, the centroid (B, 2), the std (B,)."""
    centroid = points.mean(dim=1)  # (B, 2)
    centred = points - centroid[:, None]
    std = centred.reshape(points.shape[0], -1).std(
        dim=1
    )  # (B,) unbiased over all 6 coordinates, as torch.std
    return centred / std[:, None, None], centroid, std


def estimate_affines_with_bias(
    points: np.ndarray, resolution: int, initial_bias: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`estimate_affines` that also returns the ``p_bias`` state after each frame, (N, 2) float32.

    ``initial_bias`` continues a previous call's state (the last row of its returned biases); ``None``
    starts fresh like a new ``AlignRestore`` object. Frames whose points are not finite get NaN matrices
    and leave the state unchanged (their bias row repeats the previous state, NaN before the first frame).
    Raises ``ValueError`` when a frame's finite points (nearly) coincide (spread < ``MIN_ANCHOR_SPREAD``).
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 3 or points.shape[1:] != (3, 2):
        raise ValueError(f"points must be (N, 3, 2), got shape {points.shape}")
    geometry = geometry_for(resolution)
    num = points.shape[0]
    finite = np.isfinite(points).all(axis=(1, 2))  # (N,)
    matrices = np.full((num, 2, 3), np.nan, dtype=np.float32)
    biases = np.full((num, 2), np.nan, dtype=np.float32)
    if not finite.any():
        return matrices, biases

    spread = (points - points.mean(axis=1, keepdims=True)).reshape(num, -1).std(axis=1, ddof=1)  # (N,)
    degenerate = finite & ~(spread >= MIN_ANCHOR_SPREAD)
    if degenerate.any():
        frames = np.flatnonzero(degenerate).tolist()
        raise ValueError(
            f"anchor points of frames {frames[:10]}{' …' if len(frames) > 10 else ''} (nearly) coincide "
            f"(spread below {MIN_ANCHOR_SPREAD} px): no alignment can be estimated from them; "
            "landmarks of a real face never do this, so check where they came from"
        )

    # 1. Per-frame similarity transform, batched (float32 like the reference, which runs it in torch).
    detected = torch.from_numpy(points[finite])  # (B, 3, 2)
    template = torch.from_numpy(geometry.template).expand_as(detected)  # (B, 3, 2)
    det_norm, det_centroid, det_std = _normalise(detected)
    tpl_norm, tpl_centroid, tpl_std = _normalise(template)
    covariance = det_norm.mT @ tpl_norm  # (B, 2, 2) = P1ᵀ P2
    u, _, vh = torch.linalg.svd(covariance)  # covariance = U S Vᵀ
    v = vh.mT
    rotation = v @ u.mT  # (B, 2, 2) R = V Uᵀ
    reflected = torch.linalg.det(rotation) < 0
    if reflected.any():  # reflection fix: negate V's last column
        v = torch.where(reflected[:, None, None], torch.cat([v[..., :1], -v[..., 1:]], dim=-1), v)
        rotation = v @ u.mT
    scaled_rotation = (tpl_std / det_std)[:, None, None] * rotation  # (B, 2, 2) sR
    translation = tpl_centroid - (scaled_rotation @ det_centroid[..., None])[..., 0]  # (B, 2)
    current_bias = (tpl_norm[:, 2] - det_norm[:, 2]).numpy()  # (B, 2) normalised nose offset (the quirk)

    # 2. The sequential "smoothing": an exponential moving average of the bias, added to the translation.
    state = None if initial_bias is None else np.asarray(initial_bias, dtype=np.float32).reshape(2)
    smoothed = np.empty_like(current_bias)
    for i, bias in enumerate(current_bias):
        state = (
            bias if state is None else (BIAS_MEMORY * state + (1.0 - BIAS_MEMORY) * bias).astype(np.float32)
        )
        smoothed[i] = state
    affine = torch.cat([scaled_rotation, (translation + torch.from_numpy(smoothed))[..., None]], dim=-1)

    matrices[finite] = affine.numpy()
    biases[finite] = smoothed
    # Frames without points carry the state forward (forward-fill), NaN before the first finite frame.
    index = np.where(finite, np.arange(num), -1)
    index = np.maximum.accumulate(index)
    carried = index >= 0
    biases[carried] = biases[index[carried]]
    return matrices, biases


def estimate_affines(points: np.ndarray, resolution: int) -> np.ndarray:
    """Anchor points (N, 3, 2) → frame-to-crop matrices (N, 2, 3) float32, exactly like one official
    ``AlignRestore`` object fed these frames in order (fresh ``p_bias`` state per call)."""
    return estimate_affines_with_bias(points, resolution)[0]


def _source_window(
    matrix: np.ndarray, out_w: int, out_h: int, src_w: int, src_h: int
) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1), end-exclusive and clipped, of the source pixels that a warp of the
    (out_w × out_h) output reads through the output-to-source ``matrix`` (2, 3)."""
    corners = np.array(
        [[0, 0, 1], [out_w - 1, 0, 1], [0, out_h - 1, 1], [out_w - 1, out_h - 1, 1]], np.float64
    )
    mapped = corners @ np.asarray(matrix, np.float64).T  # (4, 2) source coordinates
    x0 = int(np.clip(np.floor(mapped[:, 0].min()) - WARP_MARGIN, 0, src_w))
    y0 = int(np.clip(np.floor(mapped[:, 1].min()) - WARP_MARGIN, 0, src_h))
    x1 = int(np.clip(np.ceil(mapped[:, 0].max()) + WARP_MARGIN + 1, 0, src_w))
    y1 = int(np.clip(np.ceil(mapped[:, 1].max()) + WARP_MARGIN + 1, 0, src_h))
    return x0, y0, x1, y1


def _invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of an affine (2, 3) matrix, in float64."""
    full = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _pixel_to_grid(out_to_src: np.ndarray, offsets: np.ndarray, src_w: int, src_h: int) -> np.ndarray:
    """Per-output-pixel source maps (n, 2, 3) → maps from output pixel (x, y) straight to grid_sample's
    normalised source coordinates (align_corners=True: −1 ↔ pixel 0, +1 ↔ pixel size − 1), in float64,
    with each output's origin ``offsets`` (n, 2) = (ox, oy) folded in."""
    maps = np.array(out_to_src, dtype=np.float64)  # (n, 2, 3)
    maps[:, :, 2] += np.einsum("nij,nj->ni", maps[:, :, :2], np.asarray(offsets, np.float64))
    scale = np.array([2.0 / max(src_w - 1, 1), 2.0 / max(src_h - 1, 1)])  # (2,) pixels → [-1, 1]
    maps *= scale[None, :, None]
    maps[:, :, 2] -= 1.0
    return maps


def sample_bilinear_batch(
    images: torch.Tensor,
    out_to_src: np.ndarray,
    out_h: int,
    out_w: int,
    offsets: np.ndarray | None = None,
) -> torch.Tensor:
    """Bilinear samples of each image (n, C, h, w) at ``out_to_src[i] · [x + ox, y + oy, 1]`` for every
    pixel of an (out_h × out_w) output whose origin sits at ``offsets[i] = (ox, oy)`` (default 0); outside
    the image reads 0, like ``grid_sample(padding_mode="zeros", align_corners=True)`` (which kornia's
    warp_affine uses). One grid_sample for the whole batch. Returns (n, C, out_h, out_w)."""
    num, _, height, width = images.shape
    device = images.device
    offsets = np.zeros((num, 2)) if offsets is None else offsets
    maps = torch.as_tensor(_pixel_to_grid(out_to_src, offsets, width, height), device=device)  # (n, 2, 3)
    xs = torch.arange(out_w, dtype=torch.float64, device=device)[None, None, :, None]  # (1, 1, out_w, 1)
    ys = torch.arange(out_h, dtype=torch.float64, device=device)[None, :, None, None]  # (1, out_h, 1, 1)
    per_x, per_y, const = (maps[:, None, None, :, k] for k in range(3))  # (n, 1, 1, 2) each
    grid = (xs * per_x + ys * per_y + const).to(images.dtype)  # (n, out_h, out_w, 2): grid x, grid y
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def sample_bilinear(
    image: torch.Tensor, out_to_src: np.ndarray, out_h: int, out_w: int, offset: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """:func:`sample_bilinear_batch` for one image (C, h, w) → (C, out_h, out_w)."""
    offsets = np.asarray([offset], dtype=np.float64)
    return sample_bilinear_batch(image[None], np.asarray(out_to_src)[None], out_h, out_w, offsets)[0]


def _crop_source_windows(
    matrices: np.ndarray, crop_w: int, crop_h: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crop-to-frame maps (n, 2, 3) float64 and the frame windows (n, 4) int (x0, y0, x1, y1) they read."""
    crop_to_frame = np.stack([_invert(matrix) for matrix in matrices])  # (n, 2, 3)
    windows = np.array(
        [_source_window(m, crop_w, crop_h, width, height) for m in crop_to_frame], dtype=np.int64
    ).reshape(-1, 4)
    return crop_to_frame, windows


def _warp_to_crop_per_frame(
    frames: np.ndarray, matrices: np.ndarray, geometry: AlignmentGeometry, device: torch.device
) -> np.ndarray:
    crop_w, crop_h = geometry.crop_size
    height, width = frames.shape[1:3]
    crop_to_frame, windows = _crop_source_windows(matrices, crop_w, crop_h, width, height)
    crops = np.empty((frames.shape[0], crop_h, crop_w, 3), dtype=np.uint8)
    for i, (frame, (x0, y0, x1, y1)) in enumerate(zip(frames, windows)):
        window = torch.zeros((4, max(y1 - y0, 1), max(x1 - x0, 1)), dtype=torch.float32, device=device)
        if x1 > x0 and y1 > y0:
            pixels = torch.from_numpy(np.ascontiguousarray(frame[y0:y1, x0:x1])).to(device)
            window[:3] = pixels.permute(2, 0, 1).float()  # (3, h, w)
            window[3] = 1.0  # coverage channel: how much of each sample lies inside the frame
        # The window's pixel (0, 0) is frame pixel (x0, y0): shift the crop-to-frame map by that origin.
        crop_to_window = crop_to_frame[i].copy()
        crop_to_window[:, 2] -= (x0, y0)
        sampled = sample_bilinear(window, crop_to_window, crop_h, crop_w)  # (4, crop_h, crop_w)
        filled = sampled[:3] + (1.0 - sampled[3:]) * BORDER_FILL
        crops[i] = filled.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()  # truncation
    return crops


def _warp_to_crop_batched(
    frames: np.ndarray, matrices: np.ndarray, geometry: AlignmentGeometry, device: torch.device
) -> np.ndarray:
    crop_w, crop_h = geometry.crop_size
    num, height, width = frames.shape[:3]
    crop_to_frame, windows = _crop_source_windows(matrices, crop_w, crop_h, width, height)
    sizes = np.maximum(windows[:, 2:] - windows[:, :2], 0)  # (n, 2) window width, height (0: off-frame)
    win_w, win_h = max(int(sizes[:, 0].max()), 1), max(int(sizes[:, 1].max()), 1)
    # Every frame's window at the top left of one padded (n, win_h, win_w) batch, moved to the device at once.
    pixels = np.zeros((num, win_h, win_w, 3), dtype=np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(windows):
        pixels[i, : y1 - y0, : x1 - x0] = frames[i, y0:y1, x0:x1]
    pixels_t = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float()  # (n, 3, win_h, win_w)
    size_t = torch.as_tensor(sizes, device=device)  # (n, 2)
    inside_x = torch.arange(win_w, device=device)[None, :] < size_t[:, :1]  # (n, win_w)
    inside_y = torch.arange(win_h, device=device)[None, :] < size_t[:, 1:]  # (n, win_h)
    coverage = (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]  # (n, 1, win_h, win_w)
    # Padding is zeros in both channels: exactly what sampling beyond a per-frame window reads.
    crop_to_window = crop_to_frame.copy()
    crop_to_window[:, :, 2] -= windows[:, :2]
    sampled = sample_bilinear_batch(torch.cat([pixels_t, coverage], dim=1), crop_to_window, crop_h, crop_w)
    filled = sampled[:, :3] + (1.0 - sampled[:, 3:]) * BORDER_FILL  # (n, 3, crop_h, crop_w)
    return filled.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # truncation


def warp_to_crop(
    frames: np.ndarray, matrices: np.ndarray, resolution: int, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Frames (n, H, W, 3) uint8 → pre-resize crops (n, crop_h, crop_w, 3) uint8 (§4.5 step 5).

    Bilinear sampling, pixels outside the frame read as grey 127 (the fill is blended like kornia's
    ``padding_mode="fill"``), truncated to uint8. Only the frame region a crop reads is moved to ``device``.
    On the CPU one frame at a time (faster there, see ``WARP_BATCHED_ON_CPU``); on other devices the whole
    chunk in one transfer and one grid_sample.
    """
    frames, matrices = _check_frames_and_matrices(frames, matrices)
    geometry = geometry_for(resolution)
    device = torch.device(device)
    if frames.shape[0] == 0:
        return np.empty((0, geometry.crop_height, geometry.crop_width, 3), dtype=np.uint8)
    if WARP_BATCHED_ON_CPU or device.type != "cpu":
        return _warp_to_crop_batched(frames, matrices, geometry, device)
    return _warp_to_crop_per_frame(frames, matrices, geometry, device)


def resize_crops(crops: np.ndarray, resolution: int) -> np.ndarray:
    """Pre-resize crops (n, crop_h, crop_w, 3) uint8 → (n, res, res, 3) uint8: cv2 Lanczos-4 (§4.5 step 6)."""
    out = np.empty((crops.shape[0], resolution, resolution, crops.shape[-1]), dtype=np.uint8)
    for i, crop in enumerate(crops):
        out[i] = cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
    return out


def warp_faces(
    frames: np.ndarray, matrices: np.ndarray, resolution: int, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Frames (n, H, W, 3) uint8 + matrices (n, 2, 3) → model-ready faces (n, res, res, 3) uint8 RGB."""
    return resize_crops(warp_to_crop(frames, matrices, resolution, device=device), resolution)


def _check_frames_and_matrices(frames: np.ndarray, matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    matrices = np.asarray(matrices, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (n, H, W, 3) uint8 RGB, got {frames.dtype} {frames.shape}")
    if matrices.shape != (frames.shape[0], 2, 3):
        raise ValueError(
            f"matrices must be ({frames.shape[0]}, 2, 3) to match the frames, got {matrices.shape}"
        )
    if not np.isfinite(matrices).all():
        bad = np.flatnonzero(~np.isfinite(matrices).all(axis=(1, 2))).tolist()
        raise ValueError(
            f"matrices of frames {bad} are not finite (frames without a face must not be warped)"
        )
    return frames, matrices
