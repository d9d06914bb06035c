"""Face tracking over a streamed video: gap filling, zero-lag smoothing, face choice, no-face errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from latentsync.errors import InputError
from latentsync.faces import FaceTracker, LandmarkSmoothing, load_landmark_backend
from latentsync.faces.tracking import fill_gaps, smooth_runs

SHIFT_PER_FRAME = 3  # px the face moves left each frame in the synthetic clip


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
