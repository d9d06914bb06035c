"""Keep-or-drop rules of the filtering stages, as pure functions of measured values (unit-testable on constructed
scores). Each returns ``None`` to keep, or the reason the clip is dropped (one of the ``DROP_*`` strings)."""

from __future__ import annotations

import numpy as np

from latentsync.media import SAMPLE_RATE, VIDEO_FPS

# Training skips clips shorter than 48 frames (UNet dataset: a 16-frame target window plus a 16-frame reference
# window starting at least 16 frames away), so shorter pieces can never be used (README §4.2 of training/).
MIN_CLIP_FRAMES = 48
SEGMENT_SECONDS = 5  # the reference's `-segment_time 5`

DROP_TOO_SHORT = f"too short (< {MIN_CLIP_FRAMES} frames)"
DROP_NO_FACE = "a frame without a face"
DROP_SEVERAL_FACES = "a frame with several faces"
DROP_SMALL_FACE = "face smaller than the resolution"
DROP_SILENT = "silent audio"
DROP_LOW_SYNC = "sync confidence below threshold"
DROP_LARGE_OFFSET = "audio offset too large"
DROP_LOW_QUALITY = "visual quality below threshold"


def piece_decision(num_frames: int) -> str | None:
    """A segment is usable for training only with at least ``MIN_CLIP_FRAMES`` frames."""
    return None if num_frames >= MIN_CLIP_FRAMES else DROP_TOO_SHORT


def face_decision(face_counts: np.ndarray, face_sizes: np.ndarray, min_size: int | None) -> str | None:
    """Every frame must show exactly one face; with ``min_size``, that face's box must be at least ``min_size``
    pixels wide and tall in every frame (the reference's high-resolution filter).

    face_counts: (N,) faces found per frame. face_sizes: (N, 2) width, height of the frame's face (any value where
    the count is not 1).
    """
    counts = np.asarray(face_counts)
    if len(counts) == 0 or (counts == 0).any():
        return DROP_NO_FACE
    if (counts > 1).any():
        return DROP_SEVERAL_FACES
    if min_size is not None and (np.asarray(face_sizes, dtype=np.float64) < min_size).any():
        return DROP_SMALL_FACE
    return None


def sync_decision(offset: int, confidence: float, threshold: float, max_offset: int) -> str | None:
    """Keep iff confidence >= threshold and |offset| <= max_offset (reference sync_av.py)."""
    if not confidence >= threshold:
        return DROP_LOW_SYNC
    if abs(int(offset)) > max_offset:
        return DROP_LARGE_OFFSET
    return None


def quality_decision(frame_scores: np.ndarray, threshold: float) -> str | None:
    """Keep iff the mean of the per-frame hyperIQA scores is >= threshold (reference filter_visual_quality.py)."""
    return None if float(np.mean(frame_scores)) >= threshold else DROP_LOW_QUALITY


SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640 audio samples per video frame


def shift_waveform(waveform: np.ndarray, offset_frames: int) -> np.ndarray:
    """Delay the audio by ``offset_frames`` video frames (advance it when negative), keeping its length.

    SyncNet's offset is positive when the audio leads the picture; the reference then delays the audio by
    offset / 25 s (``ffmpeg -itsoffset``). Here the samples themselves move (silence fills the gap), so every reader,
    also those that ignore container edit lists, sees the corrected timing.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    shift = int(offset_frames) * SAMPLES_PER_FRAME
    out = np.zeros_like(waveform)
    if shift >= 0:
        out[shift:] = waveform[: max(len(waveform) - shift, 0)]
    else:
        out[: max(len(waveform) + shift, 0)] = waveform[-shift:]
    return out
