"""Faces in many frames at once: a backend's ``detect_batch`` when it has one, else ``detect`` frame by frame.

:class:`~latentsync.faces.detection.LandmarkBackend` asks only for ``detect(frame)``; a backend may also offer
``detect_batch(frames) -> list[list[Face]]`` (the face-alignment backend does: detector and landmark network on
a batch of frames, which keeps a GPU busy) with the same results per frame.
"""

from __future__ import annotations

import numpy as np

from latentsync.faces.detection import Face, LandmarkBackend


def detect_frames(backend: LandmarkBackend, frames: np.ndarray) -> list[list[Face]]:
    """Every face in each of (n, H, W, 3) uint8 RGB frames: one list per frame, in frame order."""
    detect_batch = getattr(backend, "detect_batch", None)
    if detect_batch is not None:
        return detect_batch(frames)
    return [backend.detect(frame) for frame in frames]
