"""Face crops for SyncNet: official geometry, 110-grey padding, 13-tap median smoothing, missing faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.signal import medfilt

from latentsync.errors import InputError
from latentsync.sync.crop import (
    PAD_VALUE,
    crop_face,
    crop_faces,
    crop_window,
    fill_missing_boxes,
    smooth_face_track,
)

# Half-size 80 makes the official crop side 2.8 * 80 = 224 px: no resampling, so pixels can be compared.
HALF = 80.0


def test_crop_window_is_the_official_rectangle() -> None:
    # rows cy - s ... cy + 1.8 s, columns cx - 1.4 s ... cx + 1.4 s
    assert crop_window(200.0, 150.0, HALF) == (70, 294, 88, 312)
    assert crop_window(40.0, 30.0, HALF) == (-50, 174, -72, 152)


def test_box_is_centred_horizontally_and_sits_at_the_top_of_the_crop() -> None:
    frame = np.zeros((400, 500, 3), dtype=np.uint8)
    frame[70:230, 120:280] = (200, 100, 50)  # the face box x1, y1, x2, y2 = 120, 70, 280, 230
    crop = crop_face(frame, center_x=200.0, center_y=150.0, half_size=HALF)
    assert crop.shape == (224, 224, 3)
    inside = np.all(crop == (200, 100, 50), axis=-1)
    rows, cols = np.nonzero(inside)
    assert (rows.min(), rows.max() + 1) == (0, 160)  # the box fills the top 2 s of the 2.8 s side
    assert (cols.min(), cols.max() + 1) == (32, 192)  # 0.4 s margin on both sides: centred
    assert inside.sum() == 160 * 160
    np.testing.assert_array_equal(crop, frame[70:294, 88:312])


def test_crop_past_the_border_is_padded_with_110() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(200, 240, 3), dtype=np.uint8)
    crop = crop_face(frame, center_x=40.0, center_y=30.0, half_size=HALF)  # window rows -50.., cols -72..
    assert np.all(crop[:50] == PAD_VALUE)
    assert np.all(crop[:, :72] == PAD_VALUE)
    np.testing.assert_array_equal(crop[50:, 72:], frame[0:174, 0:152])


def test_crop_equals_padding_the_whole_frame_like_the_official_code() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(120, 90, 3), dtype=np.uint8)
    cx, cy, s = 75.3, 20.8, 37.6  # near the right and top borders, non-integer geometry
    pad = int(s * 1.8)
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
    my, mx = cy + pad, cx + pad
    window = padded[int(my - s) : int(my + s * 1.8), int(mx - s * 1.4) : int(mx + s * 1.4)]
    np.testing.assert_array_equal(crop_face(frame, cx, cy, s), cv2.resize(window, (224, 224)))


def test_smoothing_equals_scipy_medfilt_on_centre_and_half_size() -> None:
    rng = np.random.default_rng(2)
    n = 40
    x1 = 100 + rng.normal(0, 5, n)
    y1 = 80 + rng.normal(0, 5, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(90, 110, n), y1 + rng.uniform(100, 130, n)], axis=1)
    track = smooth_face_track(boxes)
    assert track.shape == (n, 3)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    s = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    for column, series in enumerate((cx, cy, s)):
        np.testing.assert_array_equal(track[:, column], medfilt(series, kernel_size=13))


def test_missing_faces_are_interpolated_and_held_at_the_ends() -> None:
    boxes = np.full((8, 4), np.nan)
    boxes[2] = (10, 20, 30, 40)
    boxes[5] = (40, 50, 60, 70)
    filled = fill_missing_boxes(boxes)
    np.testing.assert_array_equal(filled[:3], [[10, 20, 30, 40]] * 3)
    np.testing.assert_array_equal(filled[3], [20, 30, 40, 50])
    np.testing.assert_array_equal(filled[4], [30, 40, 50, 60])
    np.testing.assert_array_equal(filled[5:], [[40, 50, 60, 70]] * 3)


def test_no_face_short_track_and_bad_shapes_raise_input_error() -> None:
    with pytest.raises(InputError, match="no face"):
        fill_missing_boxes(np.full((10, 4), np.nan))
    with pytest.raises(InputError, match="at least 7"):
        smooth_face_track(np.tile([0.0, 0.0, 10.0, 10.0], (6, 1)))
    with pytest.raises(InputError, match="shape"):
        fill_missing_boxes(np.zeros((10, 5)))
    degenerate = np.tile([0.0, 0.0, 10.0, 10.0], (9, 1))
    degenerate[3] = (5.0, 5.0, 5.0, 5.0)  # a zero-area box
    with pytest.raises(InputError, match="frame 3"):
        smooth_face_track(degenerate)


def test_chunk_crop_equals_per_frame_crops_and_checks_frames() -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(3, 100, 120, 3), dtype=np.uint8)
    track = np.array([[60.0, 50.0, 30.0], [61.0, 49.0, 31.5], [59.5, 52.0, 29.0]])
    crops = crop_faces(frames, track)
    assert crops.shape == (3, 224, 224, 3) and crops.dtype == np.uint8
    for frame, row, crop in zip(frames, track, crops):
        np.testing.assert_array_equal(crop, crop_face(frame, *row))
    with pytest.raises(InputError, match="uint8"):
        crop_faces(frames.astype(np.float32), track)
