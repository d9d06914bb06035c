"""Per-frame face choice over a video, streamed in chunks, with gap filling and landmark smoothing.

``FaceTracker.update`` detects faces chunk by chunk (only the chosen face's landmarks are kept: 68×2
floats per frame), ``finish`` resolves the whole track at once.

Face choice follows one face through the video: the largest usable face starts the track (as in the
reference, §4.5 step 1); every later frame takes the usable face nearest the track's last box
(:func:`follow_face`), so two people of similar size never make the track hop between them. A frame
where the followed face is not found counts as a missing detection even when other faces are visible
(a missed detection must not hand the rest of the video to someone else); only after more than
``max_gap`` such frames in a row is the face lost, and the next frame starts a new track on its largest
usable face. A change of identity therefore always sits behind a gap too long to be filled, so gap
filling and smoothing never mix two faces. (The followed face has to reappear within ``MAX_TRACK_SHIFT``
face sizes of where it was last seen; one that moved further during a bridged gap starts a new track.)

1. Gaps: a run of frames without a usable face that is at most ``max_gap`` frames long is filled by
   linear interpolation between the frames on either side (at the start or end of the video, where only
   one side exists, that side's landmarks are held). Longer runs stay invalid: the pipeline passes those
   frames through untouched.
2. Smoothing (``LandmarkSmoothing``): within each run of consecutive valid frames, every landmark
   coordinate is replaced by a Gaussian-weighted local *linear* fit over its neighbours (σ in frames,
   window ±3σ, cut at the run's ends). The fit is centred, so it has no lag, and it reproduces constant and
   linearly moving landmarks exactly (a static face stays static, a steady pan is not delayed, also at the
   ends of a run); what it removes is frame-to-frame jitter. Boxes are gap-filled, not smoothed.

Choosing the speaker (``start_point``): instead of the largest face, the track starts on the usable face whose box
contains a point (x, y) in frame pixels, on the first frame where usable faces are found (the nearest box centre if
the point lies in several boxes; :class:`InputError` naming the point if it lies in none). It is then followed as
above; when it is lost, the track restarts on the usable face nearest where it was last seen (not the largest,
which may be someone else). Other faces are never touched.

The per-frame choices (:class:`TrackRecords`) depend only on the frames up to each frame, so the records of a
video's first n frames are a prefix of the records of any longer read: :func:`resolve_track` turns any prefix into
the same :class:`FaceTrack` that tracking just those frames gives (the face-track cache relies on this).

Frames without a valid face have NaN landmarks and boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latentsync.errors import InputError
from latentsync.faces.alignment import NUM_LANDMARKS
from latentsync.faces.batch_detection import detect_frames
from latentsync.faces.detection import (
    REFERENCE_MIN_SCORE,
    REFERENCE_MIN_SIZE,
    SMALL_FACE_MIN_SIZE,
    Face,
    LandmarkBackend,
    choose_face,
    detect_upscaled,
    is_small,
    is_usable,
)

DEFAULT_MAX_GAP = 5  # frames (0.2 s at 25 fps) of missing detections that are interpolated
SMOOTHING_WINDOW_SIGMAS = 3.0  # the smoothing window reaches ±3σ frames
# A face is "the same face" as the track when its box centre lies within this many face sizes (√(w·h) of
# the track's last box) of the track's last box centre. At 25 fps a face moves a small fraction of its
# size per frame (a brisk head turn or pan: under 0.1 per frame), so half a face size also covers a
# bridged gap of DEFAULT_MAX_GAP frames; the boxes of two different people barely overlap, so their
# centres are about one face size or more apart. Half a face size leaves a margin on both sides.
MAX_TRACK_SHIFT = 0.5


@dataclass(frozen=True)
class LandmarkSmoothing:
    """Zero-lag temporal smoothing of landmarks (Gaussian-weighted local linear regression)."""

    sigma_frames: float = 1.5  # Gaussian σ in frames; about ±4 frames of context at 25 fps


@dataclass
class FaceTrack:
    """The face the model works on, per frame of the video."""

    landmarks: np.ndarray  # (N, 68, 2) float32, smoothed and gap-filled; NaN rows where invalid
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2; NaN rows where invalid
    valid: np.ndarray  # (N,) bool: the model may run on this frame
    detected: np.ndarray | None = (
        None  # (N,) bool: a face was detected here (not gap-filled); default = valid
    )
    small: np.ndarray | None = None  # (N,) bool: the detected face is below the reference's 50×80 px; default none

    def __post_init__(self) -> None:
        if self.detected is None:
            self.detected = self.valid.copy()
        if self.small is None:
            self.small = np.zeros_like(self.valid)

    @property
    def num_frames(self) -> int:
        return int(self.valid.shape[0])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open (start, stop) index ranges of the True runs of a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def fill_gaps(values: np.ndarray, present: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill runs of ≤ ``max_gap`` missing rows of ``values`` (N, ...) — interior runs by linear interpolation
    between their neighbours, runs at either end by holding the nearest present row.

    Returns (filled values with NaN in the remaining gaps, valid mask (N,))."""
    values = np.array(values, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    num = present.shape[0]
    valid = present.copy()
    values[~present] = np.nan
    if not present.any():
        return values, valid
    for start, stop in _runs(~present):
        if stop - start > max_gap:
            continue
        before, after = start - 1, stop  # neighbouring present rows (may be out of range at the ends)
        if before < 0:
            values[start:stop] = values[after]
        elif after >= num:
            values[start:stop] = values[before]
        else:
            t = (np.arange(start, stop) - before) / (after - before)  # (gap,) in (0, 1)
            t = t.reshape((-1,) + (1,) * (values.ndim - 1))
            values[start:stop] = (1.0 - t) * values[before] + t * values[after]
        valid[start:stop] = True
    return values, valid


def _local_linear_weights(length: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (length, 2r+1) and neighbour indices (length, 2r+1) of a Gaussian-weighted local linear fit
    evaluated at each frame of a run of ``length`` frames (neighbours outside the run get weight 0)."""
    radius = max(1, math.ceil(SMOOTHING_WINDOW_SIGMAS * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)  # (2r+1,)
    frames = np.arange(length)[:, None] + offsets[None, :].astype(np.int64)  # (L, 2r+1)
    inside = (frames >= 0) & (frames < length)
    w = np.exp(-0.5 * (offsets / sigma) ** 2)[None, :] * inside  # (L, 2r+1)
    s0, s1, s2 = w.sum(1), (w * offsets).sum(1), (w * offsets**2).sum(1)  # (L,) weighted moments
    det = s0 * s2 - s1**2
    # Weighted least squares of x(s) ≈ a + b·(s − t), evaluated at s = t: a = Σ w (s2 − k·s1) x / det.
    # Σ coefficients = 1 and Σ coefficients·k = 0, so constants and straight lines pass unchanged.
    linear = det > 1e-9 * np.maximum(s0 * s2, 1.0)
    safe_det = np.where(linear, det, 1.0)
    coeffs = w * (s2[:, None] - offsets[None, :] * s1[:, None]) / safe_det[:, None]
    coeffs[~linear] = w[~linear] / s0[~linear, None]  # a lone frame: plain weighted mean (itself)
    return coeffs, np.clip(frames, 0, length - 1)


def smooth_runs(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth (N, ...) values over time within each run of valid frames (see module docstring)."""
    values = np.array(values, dtype=np.float64)
    if sigma <= 0:
        return values
    flat = values.reshape(values.shape[0], -1)  # (N, D)
    for start, stop in _runs(np.asarray(valid, dtype=bool)):
        coeffs, index = _local_linear_weights(stop - start, sigma)  # (L, K) each
        run = flat[start:stop]  # (L, D)
        flat[start:stop] = np.einsum("lk,lkd->ld", coeffs, run[index])
    return flat.reshape(values.shape)


def _centre_and_size(box: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (2,) and size √(w·h) of an (x1, y1, x2, y2) box."""
    box = np.asarray(box, dtype=np.float64)
    width, height = max(box[2] - box[0], 0.0), max(box[3] - box[1], 0.0)
    return (box[:2] + box[2:]) / 2, math.sqrt(width * height)


def follow_face(
    faces: list[Face], track_box: np.ndarray, min_score: float = REFERENCE_MIN_SCORE,
    min_size: tuple[float, float] = REFERENCE_MIN_SIZE,
) -> Face | None:
    """The usable face whose box centre is nearest the track's box ``track_box`` (4,) centre, provided it
    lies within ``MAX_TRACK_SHIFT`` face sizes of it; None when no usable face is that close."""
    track_centre, track_size = _centre_and_size(track_box)
    best, best_shift = None, MAX_TRACK_SHIFT
    for face in faces:
        if not is_usable(face, min_score, min_size):
            continue
        centre, _ = _centre_and_size(face.box)
        shift = float(np.linalg.norm(centre - track_centre)) / max(track_size, 1.0)
        if shift <= best_shift:
            best, best_shift = face, shift
    return best


@dataclass(frozen=True)
class TrackRecords:
    """What tracking saw, per frame, before gap filling and smoothing (NaN rows: no face chosen)."""

    landmarks: np.ndarray  # (N, 68, 2) float32
    boxes: np.ndarray  # (N, 4) float32
    small: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return int(self.landmarks.shape[0])

    def prefix(self, count: int) -> TrackRecords:
        return TrackRecords(self.landmarks[:count], self.boxes[:count], self.small[:count])


def resolve_track(records: TrackRecords, max_gap: int = DEFAULT_MAX_GAP,
                  smoothing: LandmarkSmoothing | None = LandmarkSmoothing(),
                  min_size: tuple[float, float] = REFERENCE_MIN_SIZE) -> FaceTrack:  # fmt: skip
    """Gap filling and smoothing over all recorded frames. InputError when no frame had a usable face."""
    num = len(records)
    if num == 0:
        raise InputError("the video has no frames, so no face could be found")
    landmarks = np.asarray(records.landmarks)  # (N, 68, 2)
    boxes = np.asarray(records.boxes)  # (N, 4)
    detected = np.isfinite(landmarks).all(axis=(1, 2))
    if not detected.any():
        raise InputError(
            f"no face was found in any of the {num} frames of the video; please use a video with one clearly "
            f"visible, roughly frontal face at least {min_size[0]} px wide and {min_size[1]} px tall"
        )
    landmarks, valid = fill_gaps(landmarks, detected, max_gap)
    boxes, _ = fill_gaps(boxes, detected, max_gap)
    if smoothing is not None:
        landmarks = smooth_runs(landmarks, valid, smoothing.sigma_frames)
    landmarks[~valid] = np.nan
    boxes[~valid] = np.nan
    return FaceTrack(
        landmarks=landmarks.astype(np.float32),
        boxes=boxes.astype(np.float32),
        valid=valid,
        detected=detected,
        small=np.asarray(records.small, dtype=bool) & detected,
    )


def face_at_point(faces: list[Face], point: tuple[float, float], min_score: float = REFERENCE_MIN_SCORE,
                  min_size: tuple[float, float] = REFERENCE_MIN_SIZE) -> Face | None:  # fmt: skip
    """The usable face whose box contains ``point`` (x, y); the nearest box centre if several do; None if none."""
    xy = np.asarray(point, dtype=np.float64)
    inside = [
        face for face in faces
        if is_usable(face, min_score, min_size)
        and face.box[0] <= xy[0] <= face.box[2] and face.box[1] <= xy[1] <= face.box[3]
    ]  # fmt: skip
    if not inside:
        return None
    return min(inside, key=lambda face: float(np.linalg.norm(_centre_and_size(face.box)[0] - xy)))


def nearest_face(faces: list[Face], point: np.ndarray, min_score: float = REFERENCE_MIN_SCORE,
                 min_size: tuple[float, float] = REFERENCE_MIN_SIZE) -> Face | None:  # fmt: skip
    """The usable face whose box centre is nearest ``point`` (x, y), however far; None without usable faces."""
    usable = [face for face in faces if is_usable(face, min_score, min_size)]
    if not usable:
        return None
    return min(usable, key=lambda face: float(np.linalg.norm(_centre_and_size(face.box)[0] - point)))


class FaceTracker:
    """Incremental: feed chunks of consecutive frames in order (streaming), then call :meth:`finish`."""

    def __init__(
        self,
        backend: LandmarkBackend,
        *,
        max_gap: int = DEFAULT_MAX_GAP,
        smoothing: LandmarkSmoothing | None = LandmarkSmoothing(),
        small_faces: bool = False,
        start_point: tuple[float, float] | None = None,
    ):
        """``start_point``: (x, y) in frame pixels on the speaker's face (see the module docstring); None starts on
        the largest face. ``small_faces``: accept faces below the reference's 50×80 px (down to ``SMALL_FACE_MIN_SIZE``) and,
        in frames without a usable face, search again on an upscaled copy (:func:`detect_upscaled`). Off by
        default (the reference's rules, e.g. for training data); the lip-sync pipeline and the sync CLI turn it on."""
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 frames, got {max_gap}")
        self.backend = backend
        self.max_gap = int(max_gap)
        self.smoothing = smoothing
        self.min_score = float(getattr(backend, "min_score", REFERENCE_MIN_SCORE))
        self.small_faces = small_faces
        self.min_size = SMALL_FACE_MIN_SIZE if small_faces else REFERENCE_MIN_SIZE
        self._small: list[bool] = []  # per frame: the chosen face is below the reference's minimum size
        self._landmarks: list[np.ndarray] = []  # per frame (68, 2), NaN when no usable face
        self._boxes: list[np.ndarray] = []  # per frame (4,)
        self._track_box: np.ndarray | None = None  # (4,) box of the followed face where last found
        self._missed = 0  # frames in a row since then without the followed face
        self._finished = False
        self.start_point = None if start_point is None else (float(start_point[0]), float(start_point[1]))

    @property
    def num_frames(self) -> int:
        return len(self._landmarks)

    def update(self, frames: np.ndarray) -> None:
        """Detect and choose the face in each of (n, H, W, 3) uint8 RGB frames (the next chunk)."""
        if self._finished:
            raise RuntimeError("FaceTracker.update() called after finish()")
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (n, H, W, 3) uint8 RGB, got {frames.dtype} {frames.shape}")
        # One batched call per chunk where the backend has one (face-alignment on CUDA), else frame by frame.
        for frame, faces in zip(frames, detect_frames(self.backend, frames)):
            faces = list(faces)
            face = self._choose(faces)
            if face is None and self.small_faces:  # perhaps a face too small for the detector at this size
                faces = faces + detect_upscaled(self.backend, frame)
                face = self._choose(faces)
            if face is None and self._track_box is None and self.start_point is not None:
                self._check_point_on_a_face(faces)
            self._record(face)

    def _check_point_on_a_face(self, faces: list[Face]) -> None:
        """On the first frame with usable faces, a speaker point on none of them is the user's mistake."""
        usable = [face for face in faces if is_usable(face, self.min_score, self.min_size)]
        if usable:
            x, y = self.start_point
            boxes = "; ".join(
                f"({f.box[0]:.0f}, {f.box[1]:.0f})-({f.box[2]:.0f}, {f.box[3]:.0f})"
                for f in sorted(usable, key=lambda f: float(f.box[0]))
            )
            raise InputError(
                f"speaker: the point ({x:g}, {y:g}) is on no face in frame {self.num_frames} (the first frame with "
                f"faces); the faces found there span (x1, y1)-(x2, y2): {boxes}. Click on (or give a point inside) "
                "the face that should speak, or use 'largest'."
            )

    def _record(self, face: Face | None) -> None:
        if face is None:
            self._landmarks.append(np.full((NUM_LANDMARKS, 2), np.nan, dtype=np.float32))
            self._boxes.append(np.full(4, np.nan, dtype=np.float32))
            self._small.append(False)
        else:
            self._landmarks.append(np.asarray(face.landmarks, dtype=np.float32))
            self._boxes.append(np.asarray(face.box, dtype=np.float32))
            self._small.append(is_small(face))
        if face is None:
            self._missed += 1
        else:
            self._track_box, self._missed = np.asarray(face.box, dtype=np.float32), 0

    def _choose(self, faces: list[Face]) -> Face | None:
        """This frame's face: the followed one while the track holds, else the largest (a new track)."""
        if self._track_box is not None and self._missed <= self.max_gap:
            return follow_face(faces, self._track_box, self.min_score, self.min_size)
        # the start, or the followed face has been missing longer than a fillable gap
        if self.start_point is None:
            return choose_face(faces, self.min_score, self.min_size)
        if self._track_box is None:  # the chosen speaker's first appearance
            return face_at_point(faces, self.start_point, self.min_score, self.min_size)
        last_centre, _ = _centre_and_size(self._track_box)  # lost: the face nearest where the speaker was
        return nearest_face(faces, last_centre, self.min_score, self.min_size)

    def records(self) -> TrackRecords:
        """The per-frame choices so far (see :class:`TrackRecords`)."""
        if not self._landmarks:
            return TrackRecords(np.empty((0, NUM_LANDMARKS, 2), np.float32), np.empty((0, 4), np.float32),
                                np.empty(0, bool))  # fmt: skip
        return TrackRecords(np.stack(self._landmarks), np.stack(self._boxes), np.array(self._small, dtype=bool))

    def finish(self) -> FaceTrack:
        """Resolve gaps and smoothing over all frames seen. InputError when no frame had a usable face."""
        self._finished = True
        return resolve_track(self.records(), self.max_gap, self.smoothing, self.min_size)
