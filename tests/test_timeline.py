"""Length-mode schedules and the native-rate <-> 25 fps frame maps."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from latentsync.inference.timeline import frames_for_seconds, model_frame_for, native_frame_for, source_schedule


def test_length_modes_repeat_a_short_video_as_named():
    assert source_schedule("pingpong", 3, 8).tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
    assert source_schedule("loop", 3, 8).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert source_schedule("freeze", 3, 8).tolist() == [0, 1, 2, 2, 2, 2, 2, 2]
    for mode in ("pingpong", "loop", "freeze", "video"):
        assert source_schedule(mode, 10, 4).tolist() == [0, 1, 2, 3]  # a longer video is cut
        assert source_schedule(mode, 1, 3).tolist() == [0, 0, 0]  # a photo


def test_unknown_length_mode_is_named():
    with pytest.raises(ValueError, match="length mode must be one of pingpong, loop, freeze, video, got 'bounce'"):
        source_schedule("bounce", 3, 5)


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30000, 1001), Fraction(30), Fraction(50), Fraction(60)])
def test_native_frames_take_the_model_frame_nearest_in_time(fps):
    native = np.arange(200)
    k = model_frame_for(native, fps, 25)
    # nearest in time: no other model frame is closer to native frame j's time j / fps
    error = np.abs(k / 25 - native / fps)
    assert (error <= 0.5 / 25 + 1e-12).all()
    assert (np.diff(k) >= 0).all()
    j = native_frame_for(np.arange(100), fps, 25)
    assert (np.abs(j / fps - np.arange(100) / 25) <= 0.5 / float(fps) + 1e-12).all()
    if fps >= 25:  # every model frame's input frame shows its mouth back (no model frame is wasted)
        assert (model_frame_for(j, fps, 25) == np.arange(100)).all()


def test_frames_for_seconds_covers_the_audio():
    assert frames_for_seconds(2.0, Fraction(25)) == 50
    assert frames_for_seconds(1.0, Fraction(30000, 1001)) == 30
    assert frames_for_seconds(0.001, Fraction(60)) == 1
