"""What a landmark backend returns and the checks every backend shares: the ``Face`` record, the backend protocol,
frame validation and the detection-size factor.

A leaf of :mod:`latentsync.faces` (numpy only): the backends (:mod:`~latentsync.faces.backend_face_alignment`,
:mod:`~latentsync.faces.backend_dlib`) build on it, and :mod:`latentsync.faces.detection` (face filters, face
choice, the backend registry and loader) imports the backends only inside its loader and re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# The reference's minimum detector score (README §4.5 step 1). Backends whose scores are probabilities use it as
# their ``min_score``; backends with other score scales set their own.
REFERENCE_MIN_SCORE = 0.5


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in one frame."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in frame pixels
    score: float  # detector confidence, on the backend's own scale (see the backend's ``min_score``)
    landmarks: np.ndarray  # (68, 2) float32, iBUG-68 layout, (x, y) in frame pixels

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


@runtime_checkable
class LandmarkBackend(Protocol):
    """Anything that finds faces with iBUG-68 landmarks in an RGB frame."""

    name: str  # backends may also define ``min_score`` (float): faces scoring below it are not used

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        """(H, W, 3) uint8 RGB → every face found (possibly none), in no particular order."""
        ...


def check_frame(frame_rgb: np.ndarray) -> np.ndarray:
    """``frame_rgb`` as an array; ValueError unless it is (H, W, 3) uint8 (RGB)."""
    frame_rgb = np.asarray(frame_rgb)
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8 RGB, got {frame_rgb.dtype} {frame_rgb.shape}")
    return frame_rgb


def detection_scale(frame_shape: tuple[int, ...], max_side: int | None) -> float:
    """Factor (≤ 1) that brings the frame's longer side down to ``max_side`` for detection (1 if None)."""
    longer = max(frame_shape[0], frame_shape[1])
    if max_side is None or longer <= max_side:
        return 1.0
    return max_side / longer
