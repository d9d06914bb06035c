"""Face detection + 68-point landmarks: the reference's face filters, face choice, the small-face retry and the
backend registry (the ``Face`` record and the backend protocol live in :mod:`~latentsync.faces.face_types`).

Two backends give iBUG-68 landmarks (the layout LatentSync 1.0 aligned with, README §2.1):

* ``face_alignment`` (default): face-alignment 1.5's SFD detector and 2D-FAN-4 network, weights read from a
  local folder only (:mod:`latentsync.faces.backend_face_alignment`).
* ``dlib``: dlib's HOG detector and the 68-point predictor from ``face-recognition-models``; real weights
  that ship with a pip package, used for offline tests (:mod:`latentsync.faces.backend_dlib`).

The backends are imported only when loaded, so importing this package stays cheap; they build on
:mod:`~latentsync.faces.face_types`, never on this module.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from latentsync.faces.face_types import (  # noqa: F401 -- re-exported: the names lived here first
    REFERENCE_MIN_SCORE,
    Face,
    LandmarkBackend,
    check_frame,
    detection_scale,
)

# The reference's face filters (README §4.5 step 1), applied to each backend's Face.box in frame pixels (and the
# score filter, REFERENCE_MIN_SCORE, in face_types: the backends read it too).
MIN_FACE_WIDTH = 50
MIN_FACE_HEIGHT = 80
MIN_ASPECT = 0.2  # width / height
MAX_ASPECT = 1.5
# Small faces. A frame without a usable face at native size is searched again upscaled by this factor: dlib's HOG
# detector scans an 80×80 window, so at 2× it finds faces of about 40 px (face-alignment's SFD finds small faces
# natively and better when upscaled too). Faces below the reference's 50×80 are used, not refused, down to
# SMALL_FACE_MIN_SIDE (the 2× retry's reach, less a margin); the pipeline says that quality may be lower.
SMALL_FACE_UPSCALE = 2
SMALL_FACE_MIN_SIDE = 32  # px, box width and height: below this the aligned face is mostly interpolation
# The retry is skipped when the upscaled frame would be larger than this (cost: HOG on 4× the pixels; a face
# too small to find in a frame this large is not worth lip-syncing) or than the backend's own detection size.
MAX_UPSCALED_SIDE = 1920
# Only small faces are taken from the upscaled search: a face this large (the HOG window's 80 px at native size)
# would have been found at native size, so one found only upscaled is most likely a false detection (on the
# astronaut test image with the face blanked out, a 95x100 px "face" on the suit appears at 2x).
MAX_UPSCALED_FACE_SIDE = 80

REFERENCE_MIN_SIZE = (MIN_FACE_WIDTH, MIN_FACE_HEIGHT)
SMALL_FACE_MIN_SIZE = (SMALL_FACE_MIN_SIDE, SMALL_FACE_MIN_SIDE)


def is_usable(face: Face, min_score: float = REFERENCE_MIN_SCORE,
              min_size: tuple[float, float] = REFERENCE_MIN_SIZE) -> bool:  # fmt: skip
    """The reference's filters: box at least ``min_size`` = (50 px wide, 80 px tall) by default,
    0.2 ≤ w/h ≤ 1.5, score ≥ min_score."""
    width, height = face.width, face.height
    if width < min_size[0] or height < min_size[1]:
        return False
    return MIN_ASPECT <= width / height <= MAX_ASPECT and face.score >= min_score


def is_small(face: Face) -> bool:
    """Smaller than the reference's minimum face (50×80 px): usable, but the result may be less sharp."""
    return face.width < MIN_FACE_WIDTH or face.height < MIN_FACE_HEIGHT


def choose_face(faces: list[Face], min_score: float = REFERENCE_MIN_SCORE,
                min_size: tuple[float, float] = REFERENCE_MIN_SIZE) -> Face | None:  # fmt: skip
    """The largest (box area) usable face, or None when no face passes :func:`is_usable`."""
    usable = [face for face in faces if is_usable(face, min_score, min_size)]
    if not usable:
        return None
    return max(usable, key=lambda face: face.width * face.height)


def detect_upscaled(backend: LandmarkBackend, frame_rgb: np.ndarray,
                    factor: int = SMALL_FACE_UPSCALE) -> list[Face]:  # fmt: skip
    """Faces found on ``frame_rgb`` enlarged ``factor`` times (bicubic), with boxes and landmarks mapped back to
    the frame's pixels; [] when the enlarged frame would exceed ``MAX_UPSCALED_SIDE`` or the backend's own
    ``max_detect_side`` (which would shrink it back). For faces too small to be found at native size: faces
    whose box is ``MAX_UPSCALED_FACE_SIDE`` px or more on a side (in the frame) are dropped."""
    import cv2

    frame_rgb = check_frame(frame_rgb)
    longer = factor * max(frame_rgb.shape[:2])
    backend_limit = getattr(backend, "max_detect_side", None)
    if longer > MAX_UPSCALED_SIDE or (backend_limit is not None and longer > backend_limit):
        return []
    enlarged = cv2.resize(frame_rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    # cv2.resize maps pixel centres: x_enlarged + 0.5 = factor · (x + 0.5).
    to_frame = lambda xy: ((np.asarray(xy, np.float64) + 0.5) / factor - 0.5).astype(np.float32)  # noqa: E731
    faces = [
        Face(box=to_frame(face.box), score=face.score, landmarks=to_frame(face.landmarks))
        for face in backend.detect(enlarged)
    ]
    return [face for face in faces if max(face.width, face.height) < MAX_UPSCALED_FACE_SIDE]


BACKENDS = ("face_alignment", "dlib")


def load_landmark_backend(
    name: str = "face_alignment",
    *,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike | None = None,
    max_detect_side: int | None = None,
) -> LandmarkBackend:
    """Build a landmark backend by name ("face_alignment" or "dlib"). Never downloads anything.

    ``weights_dir``: for face_alignment, the folder holding ``2DFAN4-11f355bf06.pth.tar`` (or the 1.4-era
    ``2DFAN4-cd938726ad.zip``) and ``s3fd-619a316812.pth`` (None: torch's hub cache folder, read only);
    for dlib, an optional folder with ``shape_predictor_68_face_landmarks.dat`` (None: the copy in
    face-recognition-models). ``max_detect_side``: detect on a copy shrunk to this longer side (landmarks
    are still computed at full resolution); None keeps each backend's default.
    Raises ``CheckpointError`` for missing weights and ``ValueError`` for an unknown name.
    """
    if name == "face_alignment":
        from latentsync.faces.backend_face_alignment import FaceAlignmentBackend

        kwargs = {} if max_detect_side is None else {"max_detect_side": max_detect_side}
        return FaceAlignmentBackend.from_weights_dir(weights_dir, device=device, **kwargs)
    if name == "dlib":
        from latentsync.faces.backend_dlib import DlibBackend

        return DlibBackend.from_weights_dir(weights_dir, max_detect_side=max_detect_side)
    raise ValueError(f"unknown landmark backend {name!r}; available: {', '.join(BACKENDS)}")
