"""Face geometry: detection + 68-point landmarks, tracking, affine alignment, the mouth mask, paste-back.

The pipeline's path through this package (README §4.5, §4.6, §4.10)::

    backend = load_landmark_backend("face_alignment", device=..., weights_dir=...)
    tracker = FaceTracker(backend)
    for chunk in frame_chunks: tracker.update(chunk)          # (n, H, W, 3) uint8 RGB
    track = tracker.finish()                                   # InputError if no face anywhere
    matrices = estimate_affines(anchor_points(track.landmarks[track.valid]), resolution)
    faces = warp_faces(frames, matrices, resolution)           # (n, res, res, 3) uint8
    ... model ...                                              # (n, 3, res, res) in [-1, 1]
    frames = paste_back(frames, generated, matrices)

Importing it loads no weights and imports neither dlib nor face_alignment (backends load on demand).
"""

from latentsync.faces.alignment import (
    AlignmentGeometry,
    anchor_points,
    estimate_affines,
    estimate_affines_with_bias,
    geometry_for,
    resize_crops,
    warp_faces,
    warp_to_crop,
)
from latentsync.faces.detection import (
    BACKENDS,
    Face,
    LandmarkBackend,
    choose_face,
    detect_upscaled,
    is_small,
    is_usable,
    load_landmark_backend,
)
from latentsync.faces.mask import latent_mask, mouth_mask
from latentsync.faces.paste import paste_back, paste_crop_faces, resize_faces_to_crop
from latentsync.faces.tracking import FaceTrack, FaceTracker, LandmarkSmoothing, TrackRecords, follow_face
from latentsync.faces.tracking import resolve_track

__all__ = [
    "BACKENDS",
    "AlignmentGeometry",
    "Face",
    "FaceTrack",
    "FaceTracker",
    "LandmarkBackend",
    "LandmarkSmoothing",
    "TrackRecords",
    "anchor_points",
    "choose_face",
    "detect_upscaled",
    "estimate_affines",
    "estimate_affines_with_bias",
    "follow_face",
    "geometry_for",
    "is_small",
    "is_usable",
    "latent_mask",
    "load_landmark_backend",
    "mouth_mask",
    "paste_back",
    "paste_crop_faces",
    "resize_crops",
    "resize_faces_to_crop",
    "resolve_track",
    "warp_faces",
    "warp_to_crop",
]
