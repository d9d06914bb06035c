"""dlib landmark backend: HOG face detector + the 68-point shape predictor from face-recognition-models.

Licence note: ``shape_predictor_68_face_landmarks.dat`` was trained on the iBUG 300-W data set, whose
licence excludes commercial use. This backend is therefore the offline / testing backend (its weights ship
inside a pip package, so it works without any download); ``face_alignment`` is the production default.

Scores: dlib's HOG detector reports SVM margins, not probabilities, and only returns windows with a
positive margin; ``min_score = 0`` keeps exactly those (the reference's 0.5 applies to probabilities).
Boxes: the HOG rectangle is tight (about brows to lower lip), smaller than the detector boxes the
reference's size rules were written for, so ``Face.box`` is the union of the rectangle and the landmarks.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from latentsync.errors import CheckpointError
from latentsync.faces.face_types import Face, check_frame, detection_scale

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
HOG_UPSAMPLE = 0  # 0: no upsampling; 1 also finds a weak false face on the astronaut's suit (README §12)
HOG_MIN_SCORE = 0.0  # SVM margin; dlib's own detection threshold


def _packaged_predictor() -> Path | None:
    """The predictor inside face-recognition-models, located without importing the package (its
    ``__init__`` needs pkg_resources, which current setuptools no longer provides)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / PREDICTOR_FILE
        if candidate.is_file():
            return candidate
    return None


class DlibBackend:
    """HOG (upsample 0) detection + 68-point landmarks; CPU only."""

    name = "dlib"
    min_score = HOG_MIN_SCORE

    def __init__(self, predictor_path: str | os.PathLike, max_detect_side: int | None = None):
        try:
            import dlib
        except ImportError as err:  # a test-only dependency (requirements-test.txt), absent on the Space
            raise CheckpointError(
                "the dlib landmark backend needs dlib: pip install dlib-bin face-recognition-models "
                "(or use the face_alignment backend)"
            ) from err

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor_path))
        self._rectangle = dlib.rectangle
        self.max_detect_side = max_detect_side

    @classmethod
    def from_weights_dir(
        cls, weights_dir: str | os.PathLike | None = None, max_detect_side: int | None = None
    ) -> DlibBackend:
        if weights_dir is not None:
            path = Path(weights_dir) / PREDICTOR_FILE
            if not path.is_file():
                raise CheckpointError(
                    f"dlib landmark model {PREDICTOR_FILE} not found in {Path(weights_dir)}"
                )
            return cls(path, max_detect_side)
        path = _packaged_predictor()
        if path is None:
            raise CheckpointError(
                f"dlib landmark model {PREDICTOR_FILE} not found: install face-recognition-models "
                "or pass weights_dir= a folder that holds it"
            )
        return cls(path, max_detect_side)

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        frame_rgb = np.ascontiguousarray(check_frame(frame_rgb))
        scale = detection_scale(frame_rgb.shape, self.max_detect_side)
        small = frame_rgb
        if scale < 1.0:
            size = (round(frame_rgb.shape[1] * scale), round(frame_rgb.shape[0] * scale))
            small = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(small, HOG_UPSAMPLE, HOG_MIN_SCORE)
        faces = []
        for rect, score in zip(rects, scores):
            left, top, right, bottom = (
                v / scale for v in (rect.left(), rect.top(), rect.right(), rect.bottom())
            )
            full = self._rectangle(round(left), round(top), round(right), round(bottom))
            shape = self._predictor(frame_rgb, full)
            landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)  # (68, 2)
            box = np.array(
                [
                    min(left, landmarks[:, 0].min()),
                    min(top, landmarks[:, 1].min()),
                    max(right, landmarks[:, 0].max()),
                    max(bottom, landmarks[:, 1].max()),
                ],
                dtype=np.float32,
            )
            faces.append(Face(box=box, score=float(score), landmarks=landmarks))
        return faces
