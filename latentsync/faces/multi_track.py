"""Every face through a video: detect all faces per frame, link them across frames into numbered tracks.

The one-face :class:`~latentsync.faces.tracking.FaceTracker` follows the speaker; a conversation needs every
person. Per frame, each usable face (the reference's filters, small faces allowed) is matched to a live track
greedily by cost = (1 - IoU) + landmark distance (mean over the 68 points, in face sizes). A match needs IoU of at
least ``min_iou`` or a box centre within ``max_shift`` face sizes of the track's last box, so a face keeps its id
across a cut when it is in the same place. A track missing for up to ``max_gap`` frames (an occlusion, a blink of
the detector) keeps its id when the face comes back near where it was; after a longer absence it gets a new id.
Tracks shorter than ``min_frames`` (false detections) are dropped; ids are 0, 1, ... in order of first appearance
(ties: left to right).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from latentsync.faces.batch_detection import detect_frames
from latentsync.faces.detection import SMALL_FACE_MIN_SIZE, Face, LandmarkBackend, is_small, is_usable
from latentsync.faces.face_types import REFERENCE_MIN_SCORE

NUM_LANDMARKS = 68


@dataclass(frozen=True)
class MultiTrackConfig:
    """How detections are linked into tracks."""

    max_gap: int = 12  # frames (~0.5 s at 25 fps) a face may be missing and keep its id
    min_iou: float = 0.3  # box overlap that links a face to a track outright
    max_shift: float = 0.5  # or: box centres within this many face sizes (√(w·h)), as FaceTracker's MAX_TRACK_SHIFT
    min_frames: int = 3  # tracks with fewer detected frames are dropped as false detections

    def __post_init__(self) -> None:
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 frames, got {self.max_gap}")
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {self.min_iou}")
        if self.max_shift <= 0:
            raise ValueError(f"max_shift must be > 0 face sizes, got {self.max_shift}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")


@dataclass
class MultiFaceTrack:
    """One person's face through the video: boxes and landmarks per frame, NaN where it was not detected."""

    track_id: int
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in frame pixels; NaN rows where absent
    landmarks: np.ndarray  # (N, 68, 2) float32; NaN where absent
    small: np.ndarray  # (N,) bool: detected and below the reference's 50x80 px minimum (detection.is_small)

    @property
    def present(self) -> np.ndarray:
        """(N,) bool: detected in this frame."""
        return ~np.isnan(self.boxes).any(axis=1)

    @property
    def first_frame(self) -> int:
        return int(np.flatnonzero(self.present)[0])

    @property
    def last_frame(self) -> int:
        return int(np.flatnonzero(self.present)[-1])

    def box_at(self, frame: int) -> np.ndarray | None:
        """(4,) box in ``frame``, or None when the face is not there."""
        return None if np.isnan(self.boxes[frame]).any() else self.boxes[frame]


@dataclass
class MultiTrackResult:
    """Every face track of a video."""

    num_frames: int
    frame_size: tuple[int, int]  # (width, height) in pixels
    tracks: list[MultiFaceTrack] = field(default_factory=list)

    def track(self, track_id: int) -> MultiFaceTrack:
        for track in self.tracks:
            if track.track_id == track_id:
                return track
        raise KeyError(track_id)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _size(box: np.ndarray) -> float:
    return float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)))


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float64)


@dataclass
class _Live:
    """A track being built: its id, where it was last seen and its per-frame records."""

    track_id: int
    box: np.ndarray
    landmarks: np.ndarray
    last_seen: int
    frames: dict[int, Face] = field(default_factory=dict)


class MultiFaceTracker:
    """Incremental: feed chunks of consecutive (n, H, W, 3) uint8 RGB frames in order, then :meth:`finish`."""

    def __init__(self, backend: LandmarkBackend, config: MultiTrackConfig = MultiTrackConfig()):
        self.backend = backend
        self.config = config
        self.min_score = float(getattr(backend, "min_score", REFERENCE_MIN_SCORE))
        self._tracks: list[_Live] = []
        self._frame = 0
        self._frame_size: tuple[int, int] = (0, 0)

    def update(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (n, H, W, 3) uint8 RGB, got {frames.dtype} {frames.shape}")
        self._frame_size = (int(frames.shape[2]), int(frames.shape[1]))
        for faces in detect_frames(self.backend, frames):
            usable = [face for face in faces if is_usable(face, self.min_score, SMALL_FACE_MIN_SIZE)]
            self._link(usable)
            self._frame += 1

    def _cost(self, live: _Live, face: Face) -> float | None:
        """Cost of linking ``face`` to ``live``; None when they cannot be the same face."""
        iou = box_iou(live.box, face.box)
        size = _size(live.box)
        shift = float(np.linalg.norm(_centre(live.box) - _centre(face.box))) / size
        if iou < self.config.min_iou and shift > self.config.max_shift:
            return None
        landmark_distance = float(np.linalg.norm(live.landmarks - face.landmarks, axis=1).mean()) / size
        return (1.0 - iou) + landmark_distance

    def _link(self, faces: list[Face]) -> None:
        frame = self._frame
        live = [t for t in self._tracks if frame - t.last_seen <= self.config.max_gap + 1]
        pairs = [(cost, i, j) for i, t in enumerate(live) for j, face in enumerate(faces)
                 if (cost := self._cost(t, face)) is not None]  # fmt: skip
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        for _, i, j in sorted(pairs):  # greedy: cheapest pair first
            if i in taken_tracks or j in taken_faces:
                continue
            taken_tracks.add(i)
            taken_faces.add(j)
            self._extend(live[i], faces[j])
        for j in sorted(set(range(len(faces))) - taken_faces, key=lambda j: float(faces[j].box[0])):
            track = _Live(len(self._tracks), faces[j].box, faces[j].landmarks, frame)
            self._tracks.append(track)
            self._extend(track, faces[j])

    def _extend(self, track: _Live, face: Face) -> None:
        track.box = np.asarray(face.box, np.float32)
        track.landmarks = np.asarray(face.landmarks, np.float32)
        track.last_seen = self._frame
        track.frames[self._frame] = face

    def finish(self) -> MultiTrackResult:
        """The tracks with at least ``min_frames`` detections, numbered 0, 1, ... by first appearance."""
        n = self._frame
        kept = [t for t in self._tracks if len(t.frames) >= self.config.min_frames]
        kept.sort(key=lambda t: (min(t.frames), float(t.frames[min(t.frames)].box[0])))
        result = MultiTrackResult(num_frames=n, frame_size=self._frame_size)
        for new_id, live in enumerate(kept):
            boxes = np.full((n, 4), np.nan, np.float32)
            landmarks = np.full((n, NUM_LANDMARKS, 2), np.nan, np.float32)
            small = np.zeros(n, bool)
            for frame, face in live.frames.items():
                boxes[frame] = face.box
                landmarks[frame] = face.landmarks
                small[frame] = is_small(face)
            result.tracks.append(MultiFaceTrack(new_id, boxes, landmarks, small))
        return result


def track_all_faces(backend: LandmarkBackend, frame_chunks: Iterable[np.ndarray],
                    config: MultiTrackConfig = MultiTrackConfig()) -> MultiTrackResult:  # fmt: skip
    """Every face track of a video given as chunks of (n, H, W, 3) uint8 RGB frames."""
    tracker = MultiFaceTracker(backend, config)
    for chunk in frame_chunks:
        tracker.update(chunk)
    return tracker.finish()


def draw_tracks(frame_rgb: np.ndarray, result: MultiTrackResult, frame: int = 0) -> np.ndarray:
    """A copy of ``frame_rgb`` with every track present in ``frame`` boxed and labelled with its id."""
    import cv2

    image = np.ascontiguousarray(frame_rgb).copy()
    thickness = max(1, round(max(image.shape[:2]) / 300))
    for track in result.tracks:
        box = track.box_at(frame)
        if box is None:
            continue
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), (255, 255, 0), thickness)
        cv2.putText(image, str(track.track_id), (x1 + 2, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * thickness, (255, 255, 0), thickness)  # fmt: skip
    return image
