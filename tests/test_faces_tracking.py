"""Face tracking over a streamed video: gap filling, zero-lag smoothing, face choice and following one face,
no-face errors, the defaults' behaviour, and the demo asset."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from latentsync import media
from latentsync.errors import InputError
from latentsync.faces import Face, FaceTracker, LandmarkSmoothing, follow_face, load_landmark_backend
from latentsync.faces.tracking import MAX_TRACK_SHIFT, fill_gaps, smooth_runs

from .conftest import DEMO_VIDEO

SHIFT_PER_FRAME = 3  # px the face moves left each frame in the synthetic clip
# Two copies of the astronaut's face side by side (centres x ≈ 109 and x ≈ 489 on a 640-px canvas).
LEFT_FACE_X, RIGHT_FACE_X = 110, 490
FACE_HALF_WIDTH = 60  # a chosen face's landmark centroid lies within this of its copy's centre
# The demo clip's face (assets/demo_video.mp4, 320×320): dlib's landmarks span x 100–225, y 86–206 over all
# 100 frames (measured once); 15 px of margin on each side.
DEMO_FACE_BOX = (85, 71, 240, 221)  # x1, y1, x2, y2


@pytest.fixture(scope="module")
def dlib_backend():
    return load_landmark_backend("dlib")


def moving_astronaut(num_frames: int, grey: set[int]) -> np.ndarray:
    """(n, 400, 400, 3) windows of the astronaut panning SHIFT_PER_FRAME px per frame; frames in ``grey``
    are flat grey (no face)."""
    image = skimage.data.astronaut()
    frames = np.stack(
        [image[20:420, SHIFT_PER_FRAME * t : SHIFT_PER_FRAME * t + 400] for t in range(num_frames)]
    )
    for t in grey:
        frames[t] = 128
    return frames


def two_face_canvas() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The astronaut's face at 1× (left) and 1.5× (right) on a grey canvas, and the larger copy's region."""
    face = skimage.data.astronaut()[40:230, 140:310]  # (190, 170, 3)
    canvas = np.full((420, 700, 3), 110, np.uint8)
    canvas[20:210, 20:190] = face
    canvas[100:385, 380:635] = cv2.resize(face, (255, 285), interpolation=cv2.INTER_CUBIC)
    return canvas, (380, 100, 635, 385)


def two_faces(left_scale: float, right_scale: float, grey_left: bool = False) -> np.ndarray:
    """(400, 640, 3): two copies of the astronaut's face at the given scales, centred at LEFT_FACE_X and
    RIGHT_FACE_X; ``grey_left`` leaves the left copy out."""
    face = skimage.data.astronaut()[40:230, 140:310]  # (190, 170, 3)
    canvas = np.full((400, 640, 3), 110, np.uint8)
    for centre_x, scale, show in (
        (LEFT_FACE_X, left_scale, not grey_left),
        (RIGHT_FACE_X, right_scale, True),
    ):
        if not show:
            continue
        h, w = round(190 * scale), round(170 * scale)
        y0, x0 = 200 - h // 2, centre_x - w // 2
        canvas[y0 : y0 + h, x0 : x0 + w] = cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC)
    return canvas


def alternating_faces(num_frames: int) -> np.ndarray:
    """Frames where the two faces swap being the larger one (scales 1.0 / 1.06); the right one starts larger."""
    return np.stack([two_faces(1.0, 1.06) if t % 2 == 0 else two_faces(1.06, 1.0) for t in range(num_frames)])


def centroid_x(track) -> np.ndarray:
    return track.landmarks[:, :, 0].mean(axis=1)  # (N,)


def second_difference(landmarks: np.ndarray) -> float:
    """Mean absolute second difference over time of (N, 68, 2) landmarks: frame-to-frame jitter."""
    return float(np.abs(np.diff(landmarks, n=2, axis=0)).mean())


def noisy_astronaut(num_frames: int, noise_sd: float = 10.0) -> np.ndarray:
    """A static face whose frames differ only by pixel noise: what the detector then reports is jitter."""
    image = skimage.data.astronaut()[20:420, 0:400].astype(np.float64)
    rng = np.random.default_rng(0)
    return np.stack(
        [
            np.clip(image + rng.normal(0, noise_sd, image.shape), 0, 255).astype(np.uint8)
            for _ in range(num_frames)
        ]
    )


# --- the pure maths ----------------------------------------------------------------------------------


def test_fill_gaps_interpolates_short_gaps_and_keeps_long_ones():
    present = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0], bool)
    values = np.arange(11, dtype=np.float64)[:, None] * [1.0, -2.0]  # a straight line in 2-D
    filled, valid = fill_gaps(np.where(present[:, None], values, np.nan), present, max_gap=2)
    np.testing.assert_array_equal(valid, [1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(filled[2:4], values[2:4])  # interior gap: linear interpolation
    np.testing.assert_array_equal(filled[10], values[9])  # trailing gap: the last detection is held
    assert np.isnan(filled[5:9]).all()


def test_smoothing_keeps_static_and_linear_motion_and_removes_jitter():
    valid = np.ones(40, bool)
    constant = np.full((40, 68, 2), 123.25)
    np.testing.assert_array_equal(
        smooth_runs(constant, valid, 1.5).astype(np.float32), constant.astype(np.float32)
    )
    t = np.arange(40, dtype=np.float64)
    line = np.stack([2.0 * t + 5, -0.5 * t], axis=-1)[:, None, :]  # (40, 1, 2) steady pan
    np.testing.assert_allclose(smooth_runs(line, valid, 1.5), line, atol=1e-9)  # no lag, also at the ends
    rng = np.random.default_rng(0)
    noisy = line + rng.normal(0, 1.0, line.shape)
    residual = smooth_runs(noisy, valid, 1.5) - line
    assert residual.std() < 0.6 * (noisy - line).std()


def test_smoothing_stays_inside_runs():
    valid = np.array([1, 1, 1, 0, 0, 1, 1, 1], bool)
    values = np.where(valid, 1.0, np.nan)[:, None]
    values[5:] = 50.0
    out = smooth_runs(values, valid, 2.0)
    np.testing.assert_allclose(out[:3], 1.0)  # unaffected by the run after the gap
    np.testing.assert_allclose(out[5:], 50.0)
    single = smooth_runs(np.array([[7.0]]), np.array([True]), 2.0)
    np.testing.assert_allclose(single, 7.0)


def _box_face(x1: float, y1: float, width: float = 100.0, height: float = 120.0, score: float = 1.0) -> Face:
    return Face(np.array([x1, y1, x1 + width, y1 + height], np.float32), score, np.zeros((68, 2), np.float32))


def test_follow_face_takes_the_nearest_usable_face_within_the_threshold():
    track = np.array([100, 100, 200, 220], np.float32)  # size √(100·120) ≈ 109.5 px
    near, far, tiny = _box_face(110, 95), _box_face(400, 100), _box_face(100, 100, width=40)
    assert follow_face([far, near, tiny], track) is near  # nearest usable, whatever the order
    assert follow_face([far, tiny], track) is None  # the tiny one is nearest but unusable
    size = np.sqrt(100 * 120)
    just_in = _box_face(100 + 0.99 * MAX_TRACK_SHIFT * size, 100)
    just_out = _box_face(100 + 1.01 * MAX_TRACK_SHIFT * size, 100)
    assert follow_face([just_in], track) is just_in
    assert follow_face([just_out], track) is None
    assert follow_face([], track) is None


# --- the tracker on real faces (dlib) ---------------------------------------------------------------


def test_tracker_interpolates_short_gap_and_invalidates_long_gap(dlib_backend):
    frames = moving_astronaut(14, grey={3, 4, 8, 9, 10, 11})
    tracker = FaceTracker(dlib_backend, max_gap=3, smoothing=None)
    for start in range(0, 14, 5):  # streamed in chunks of 5, 5, 4
        tracker.update(frames[start : start + 5])
    track = tracker.finish()
    assert track.num_frames == 14
    assert track.landmarks.shape == (14, 68, 2) and track.landmarks.dtype == np.float32
    assert track.boxes.shape == (14, 4)
    np.testing.assert_array_equal(track.valid, [t not in {8, 9, 10, 11} for t in range(14)])
    np.testing.assert_array_equal(track.detected, [t not in {3, 4, 8, 9, 10, 11} for t in range(14)])
    assert np.isnan(track.landmarks[8:12]).all() and np.isnan(track.boxes[8:12]).all()
    # Frames 3 and 4 lie 1/3 and 2/3 of the way from frame 2 to frame 5.
    np.testing.assert_allclose(
        track.landmarks[3], (2 * track.landmarks[2] + track.landmarks[5]) / 3, atol=1e-4
    )
    np.testing.assert_allclose(
        track.landmarks[4], (track.landmarks[2] + 2 * track.landmarks[5]) / 3, atol=1e-4
    )
    # ... and close to what the detector finds on the real (un-greyed) frames.
    truth = [dlib_backend.detect(frame)[0].landmarks for frame in moving_astronaut(5, grey=set())[3:5]]
    assert np.abs(track.landmarks[3:5] - np.stack(truth)).mean() < 2.0


def test_tracker_smoothing_follows_the_pan_without_lag(dlib_backend):
    frames = moving_astronaut(10, grey=set())
    raw = FaceTracker(dlib_backend, smoothing=None)
    smooth = FaceTracker(dlib_backend, smoothing=LandmarkSmoothing(sigma_frames=1.5))
    raw.update(frames)
    smooth.update(frames)
    raw_track, smooth_track = raw.finish(), smooth.finish()
    assert smooth_track.valid.all()
    # The face moves SHIFT_PER_FRAME px left per frame; the smoothed centroid keeps that pace everywhere.
    centroid_x = smooth_track.landmarks[:, :, 0].mean(axis=1)
    np.testing.assert_allclose(np.diff(centroid_x), -SHIFT_PER_FRAME, atol=0.5)
    assert np.abs(smooth_track.landmarks - raw_track.landmarks).mean() < 1.5


def test_tracker_with_no_face_anywhere_raises_input_error(dlib_backend):
    tracker = FaceTracker(dlib_backend)
    tracker.update(np.stack([skimage.data.chelsea()[:300, :400], np.full((300, 400, 3), 90, np.uint8)]))
    with pytest.raises(InputError, match="no face"):
        tracker.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        tracker.update(np.zeros((1, 8, 8, 3), np.uint8))


def test_tracker_picks_the_larger_of_two_faces(dlib_backend):
    canvas, (x1, y1, x2, y2) = two_face_canvas()
    tracker = FaceTracker(dlib_backend)
    tracker.update(canvas[None])
    track = tracker.finish()
    centre = track.landmarks[0].mean(axis=0)
    assert x1 < centre[0] < x2 and y1 < centre[1] < y2


def test_tracker_rejects_bad_frames(dlib_backend):
    with pytest.raises(ValueError, match="uint8"):
        FaceTracker(dlib_backend).update(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(InputError, match="no frames"):
        FaceTracker(dlib_backend).finish()


def test_tracker_follows_one_face_when_two_alternate_in_size(dlib_backend):
    frames = alternating_faces(8)
    sizes = [
        [f.width for f in sorted(dlib_backend.detect(frame), key=lambda f: f.box[0])] for frame in frames[:2]
    ]
    assert sizes[0][1] > sizes[0][0] and sizes[1][0] > sizes[1][1]  # the larger face really swaps sides
    for smoothing in (None, LandmarkSmoothing()):
        tracker = FaceTracker(dlib_backend, smoothing=smoothing)
        for start in range(0, 8, 3):  # streamed: the choice carries over chunk boundaries
            tracker.update(frames[start : start + 3])
        track = tracker.finish()
        assert track.detected.all() and track.valid.all()
        # The right face is the larger one in frame 0: the track starts there and stays there, also after
        # smoothing (which would otherwise average the two faces into the empty canvas between them).
        np.testing.assert_array_less(np.abs(centroid_x(track) - RIGHT_FACE_X), FACE_HALF_WIDTH)


def test_tracker_keeps_its_face_through_a_missed_detection(dlib_backend):
    # Left face larger at the start; in frame 3 only the right face is visible; afterwards the right one is
    # the larger. The track stays on the left face and bridges frame 3 instead of switching for good.
    frames = np.stack(
        [two_faces(1.06, 1.0)] * 3 + [two_faces(1.06, 1.0, grey_left=True)] + [two_faces(1.0, 1.06)] * 3
    )
    tracker = FaceTracker(dlib_backend, smoothing=None)
    tracker.update(frames)
    track = tracker.finish()
    np.testing.assert_array_equal(track.detected, [True, True, True, False, True, True, True])
    assert track.valid.all()
    np.testing.assert_array_less(np.abs(centroid_x(track) - LEFT_FACE_X), FACE_HALF_WIDTH)


def test_tracker_starts_over_on_the_largest_face_after_a_long_gap(dlib_backend):
    # The followed (left) face vanishes for good; after max_gap frames without it the right face is taken,
    # and the frames in between stay invalid rather than being interpolated from one person to the other.
    frames = np.stack([two_faces(1.06, 1.0)] * 2 + [two_faces(1.06, 1.0, grey_left=True)] * 6)
    tracker = FaceTracker(dlib_backend, max_gap=2, smoothing=None)
    tracker.update(frames)
    track = tracker.finish()
    np.testing.assert_array_equal(track.valid, [True, True, False, False, False, True, True, True])
    x = centroid_x(track)
    np.testing.assert_array_less(np.abs(x[:2] - LEFT_FACE_X), FACE_HALF_WIDTH)
    np.testing.assert_array_less(np.abs(x[5:] - RIGHT_FACE_X), FACE_HALF_WIDTH)


# --- the defaults' behaviour ---------------------------------------------------------------------------


def test_default_settings_fill_a_short_gap(dlib_backend):
    frames = moving_astronaut(12, grey={4, 5, 6})  # a 3-frame (0.12 s) dropout of the detector
    tracker = FaceTracker(dlib_backend)  # default max_gap and smoothing
    tracker.update(frames)
    track = tracker.finish()
    assert track.valid.all()
    np.testing.assert_array_equal(track.detected, [t not in {4, 5, 6} for t in range(12)])
    truth = [dlib_backend.detect(frame)[0].landmarks for frame in moving_astronaut(7, grey=set())[4:7]]
    assert np.abs(track.landmarks[4:7] - np.stack(truth)).mean() < 2.0


def test_default_smoothing_removes_jitter(dlib_backend):
    frames = noisy_astronaut(20)
    raw_tracker, tracker = (
        FaceTracker(dlib_backend, smoothing=None),
        FaceTracker(dlib_backend),
    )  # default smoothing
    raw_tracker.update(frames)
    tracker.update(frames)
    raw, smooth = raw_tracker.finish().landmarks, tracker.finish().landmarks
    assert second_difference(raw) > 0.3  # the detector really jitters on the noisy copies (≈ 0.6 px)
    assert second_difference(smooth) < 0.25 * second_difference(raw)  # measured: ≈ 0.09×
    spread = lambda lm: np.abs(lm - lm.mean(axis=0)).mean()
    assert spread(smooth) < 0.7 * spread(raw)  # measured: ≈ 0.47×
    np.testing.assert_allclose(smooth.mean(axis=0), raw.mean(axis=0), atol=0.25)  # no drift, no bias


# --- the demo asset ---------------------------------------------------------------------------------------


def test_demo_video_has_a_tracked_face_in_anatomical_order_and_smoothing_removes_jitter(dlib_backend):
    raw_tracker, tracker = FaceTracker(dlib_backend, smoothing=None), FaceTracker(dlib_backend)
    num_frames = 0
    for chunk in media.iter_video_frames(DEMO_VIDEO, chunk_size=16):
        raw_tracker.update(chunk)
        tracker.update(chunk)
        num_frames += len(chunk)
    raw, track = raw_tracker.finish(), tracker.finish()
    assert num_frames == 100 and track.num_frames == num_frames
    assert raw.detected.all() and track.valid.all()  # a face in every frame, none gap-filled
    x1, y1, x2, y2 = DEMO_FACE_BOX
    for lm in (raw.landmarks, track.landmarks):
        assert (lm[..., 0] > x1).all() and (lm[..., 0] < x2).all(), "landmarks left the demo's face box"
        assert (lm[..., 1] > y1).all() and (lm[..., 1] < y2).all(), "landmarks left the demo's face box"
        brows, eyes = lm[:, 17:27, 1].mean(axis=1), lm[:, 36:48, 1].mean(axis=1)  # (N,) mean heights
        nose, mouth, chin = (
            lm[:, 30:36, 1].mean(axis=1),
            lm[:, 48:68, 1].mean(axis=1),
            lm[:, 8, 1],
        )  # tip + base
        # Image y grows downwards: brows above eyes above nose above mouth above chin, in every frame.
        assert ((brows < eyes) & (eyes < nose) & (nose < mouth) & (mouth < chin)).all()
        assert (
            lm[:, 36:42, 0].mean(axis=1) < lm[:, 42:48, 0].mean(axis=1)
        ).all()  # image-left eye on the left
    # Smoothing removes frame-to-frame jitter (measured: 0.65 → 0.058 px) without moving the face.
    assert second_difference(track.landmarks) < 0.25 * second_difference(raw.landmarks)
    assert np.abs(track.landmarks - raw.landmarks).mean() < 0.5  # measured: 0.24 px
