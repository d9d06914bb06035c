"""Keep-or-drop rules of the data toolchain on constructed values, and the audio shift."""

from __future__ import annotations

import numpy as np
import pytest

from latentsync.data import decisions as d


def test_piece_needs_48_frames():
    assert d.piece_decision(48) is None
    assert d.piece_decision(47) == d.DROP_TOO_SHORT


def test_face_decision():
    sizes = np.full((4, 2), 300.0)
    assert d.face_decision(np.array([1, 1, 1, 1]), sizes, 256) is None
    assert d.face_decision(np.array([1, 0, 1, 1]), sizes, 256) == d.DROP_NO_FACE
    assert d.face_decision(np.array([1, 2, 1, 1]), sizes, 256) == d.DROP_SEVERAL_FACES
    assert d.face_decision(np.array([], dtype=int), np.zeros((0, 2)), 256) == d.DROP_NO_FACE
    small = sizes.copy()
    small[2] = (300.0, 255.0)  # one frame's face is a pixel short in height
    assert d.face_decision(np.ones(4, int), small, 256) == d.DROP_SMALL_FACE
    assert d.face_decision(np.ones(4, int), small, 512) == d.DROP_SMALL_FACE
    assert d.face_decision(np.ones(4, int), small, None) is None  # high-resolution filter off


@pytest.mark.parametrize(
    "offset, confidence, expected",
    [(0, 3.0, None), (-6, 7.5, None), (6, 3.01, None), (0, 2.99, d.DROP_LOW_SYNC), (7, 9.0, d.DROP_LARGE_OFFSET),
     (-7, 9.0, d.DROP_LARGE_OFFSET), (3, float("nan"), d.DROP_LOW_SYNC)],
)  # fmt: skip
def test_sync_decision_reference_thresholds(offset, confidence, expected):
    assert d.sync_decision(offset, confidence, threshold=3, max_offset=6) == expected


def test_quality_decision_on_mean_of_three_frames():
    assert d.quality_decision(np.array([30.0, 50.0, 40.0]), 40) is None  # mean exactly 40 is kept
    assert d.quality_decision(np.array([39.0, 40.0, 40.0]), 40) == d.DROP_LOW_QUALITY
    assert d.quality_decision(np.array([90.0, 10.0, 10.0]), 40) == d.DROP_LOW_QUALITY  # mean 36.67
    assert d.quality_decision(np.array([90.0, 10.0, 10.0]), 36.6) is None


def test_shift_waveform_delays_and_advances_by_whole_frames():
    wave = np.arange(1, 6401, dtype=np.float32)  # 10 frames of 640 samples
    later = d.shift_waveform(wave, 2)
    assert later.shape == wave.shape
    assert (later[:1280] == 0).all() and (later[1280:] == wave[:-1280]).all()
    earlier = d.shift_waveform(wave, -3)
    assert (earlier[:-1920] == wave[1920:]).all() and (earlier[-1920:] == 0).all()
    assert (d.shift_waveform(wave, 0) == wave).all()
    assert (d.shift_waveform(wave, 20) == 0).all()  # shifted past the end
