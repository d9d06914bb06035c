"""Face crops for SyncNet scoring, with the official evaluation's geometry (syncnet_python's `crop_video`).

The official rule, per face track (boxes x1, y1, x2, y2 in frame pixels):

1. Per frame: half-size ``s = max(w, h) / 2``, centre ``(cx, cy)``; each of the three series is smoothed
   over the track with ``scipy.signal.medfilt(kernel_size=13)`` (zero-padded at both ends, a quirk we
   keep: the first and last 6 frames take the median of 7-12 real values and some zeros).
2. Per frame: the frame is padded by ``int(s * (1 + 2 * cs))`` pixels of value 110 (cs = crop_scale 0.4)
   and the crop taken in padded coordinates is rows ``int(my - s) : int(my + s * (1 + 2 cs))`` and columns
   ``int(mx - s * (1 + cs)) : int(mx + s * (1 + cs))`` where ``(mx, my)`` is the padded centre: a square of
   side 2.8 s, horizontally centred on the face and extending 1.8 s below its centre (chin and mouth).
3. The crop is resized to 224 x 224 with ``cv2.resize`` (bilinear).

We take the same window without materialising the padded frame (only the crop is filled with 110 and the
in-frame part copied), which is equal pixel for pixel. Differences from the official pipeline, both
deliberate: the crops are not written to a lossy video file and decoded again, and a crop whose smoothed
centre lies outside the frame is filled with 110 where the official slicing would clip or wrap.

Frames in and crops out are RGB uint8 here; the scorer flips to BGR for the network.
"""

from __future__ import annotations

import cv2
import numpy as np

from latentsync.errors import InputError
from latentsync.sync.syncnet import CROP_SIZE

CROP_SCALE = 0.4  # official crop_scale: margin around the face box, in units of the half-size
PAD_VALUE = 110  # grey used by the official crop where the window passes the frame border
MEDIAN_TAPS = 13  # official smoothing: scipy.signal.medfilt(kernel_size=13) on centre and size
MIN_TRACK_FRAMES = MEDIAN_TAPS // 2 + 1  # = 7: below this the zero-padded median can return size 0


def fill_missing_boxes(boxes: np.ndarray) -> np.ndarray:
    """Fill frames without a face (NaN rows) by linear interpolation of each coordinate over time.

    Gaps between detections are bridged linearly (the official tracker interpolates boxes inside a track
    the same way); frames before the first or after the last detection repeat the nearest box.
    Raises :class:`InputError` when no frame has a face.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"face boxes must have shape (frames, 4) as x1, y1, x2, y2; got {boxes.shape}")
    found = ~np.isnan(boxes).any(axis=1)
    if not found.any():
        raise InputError(f"no face was found in any of the {len(boxes)} frames; SyncNet needs a visible face")
    if found.all():
        return boxes.copy()
    frames = np.arange(len(boxes))
    return np.stack([np.interp(frames, frames[found], boxes[found, i]) for i in range(4)], axis=1)


def _zero_padded_median(series: np.ndarray, taps: int) -> np.ndarray:
    """Equals ``scipy.signal.medfilt(series, taps)`` (zeros past both ends), minus its short-input warning."""
    half = taps // 2
    padded = np.pad(series, half)  # constant 0, like medfilt
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, taps), axis=1)


def smooth_face_track(boxes: np.ndarray) -> np.ndarray:
    """Whole box track (N, 4) x1, y1, x2, y2 (NaN rows: no face) -> smoothed crop track (N, 3).

    Columns of the result are centre x, centre y and half-size ``s``, each median-filtered over 13 frames
    exactly as the official evaluation does. NaN rows are first filled by :func:`fill_missing_boxes`.
    """
    boxes = fill_missing_boxes(boxes)
    if len(boxes) < MIN_TRACK_FRAMES:
        raise InputError(
            f"the face track has {len(boxes)} frames; SyncNet scoring needs at least {MIN_TRACK_FRAMES}"
        )
    x1, y1, x2, y2 = boxes.T
    half_size = np.maximum(x2 - x1, y2 - y1) / 2
    if (half_size <= 0).any():
        frame = int(np.argmax(half_size <= 0))
        raise InputError(f"face box in frame {frame} has no area: {boxes[frame].tolist()}")
    series = ((x1 + x2) / 2, (y1 + y2) / 2, half_size)
    return np.stack([_zero_padded_median(s, MEDIAN_TAPS) for s in series], axis=1)  # (N, 3)


def crop_window(center_x: float, center_y: float, half_size: float) -> tuple[int, int, int, int]:
    """The official crop rectangle (top, bottom, left, right) in frame pixels; it may pass the borders."""
    pad = int(half_size * (1 + 2 * CROP_SCALE))  # official pad width; kept so int() truncates as there
    my, mx = center_y + pad, center_x + pad  # centre in padded coordinates (always positive)
    top = int(my - half_size)
    bottom = int(my + half_size * (1 + 2 * CROP_SCALE))
    left = int(mx - half_size * (1 + CROP_SCALE))
    right = int(mx + half_size * (1 + CROP_SCALE))
    return top - pad, bottom - pad, left - pad, right - pad


def crop_face(frame: np.ndarray, center_x: float, center_y: float, half_size: float) -> np.ndarray:
    """One frame (H, W, 3) uint8 -> its face crop (224, 224, 3) uint8, grey 110 outside the frame."""
    top, bottom, left, right = crop_window(center_x, center_y, half_size)
    height, width = frame.shape[:2]
    window = np.full((bottom - top, right - left, 3), PAD_VALUE, dtype=np.uint8)
    src_top, src_bottom = max(top, 0), min(bottom, height)
    src_left, src_right = max(left, 0), min(right, width)
    if src_top < src_bottom and src_left < src_right:
        window[src_top - top : src_bottom - top, src_left - left : src_right - left] = frame[
            src_top:src_bottom, src_left:src_right
        ]
    return cv2.resize(window, (CROP_SIZE, CROP_SIZE))  # bilinear, as cv2's default in the official code


def crop_faces(frames: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Frames (n, H, W, 3) uint8 and their rows of the smoothed track (n, 3) -> crops (n, 224, 224, 3) uint8.

    Streams: call it chunk by chunk with ``track[start : start + n]`` from :func:`smooth_face_track`.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(
            f"frames must be (n, H, W, 3) uint8 RGB, got shape {frames.shape} dtype {frames.dtype}"
        )
    if track.shape != (len(frames), 3):
        raise ValueError(f"crop_faces: track must have shape ({len(frames)}, 3), got {track.shape}")
    crops = np.empty((len(frames), CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for i, (frame, (cx, cy, s)) in enumerate(zip(frames, track)):  # per-frame geometry: one cv2 call each
        crops[i] = crop_face(frame, cx, cy, s)
    return crops
