"""Which source frame each output frame shows: the length modes, and the map between a native frame rate and the
model's 25 fps.

Length modes, when the speech and the video differ in length:

* ``pingpong`` (default, the reference's loop): the output lasts as long as the audio; a shorter video is played
  forwards, backwards, forwards... (the turning frames repeat, as upstream). A longer video is cut.
* ``loop``: as long as the audio; a shorter video starts again from its first frame (a visible jump unless the clip
  was made to loop).
* ``freeze``: as long as the audio; a shorter video holds its last frame.
* ``video``: the output lasts as long as the video; the audio is cut, or padded with silence, to that length.

Native frame rate: the model works on a 25 fps timeline (frame ``k`` at ``k / 25`` s with audio window ``k``). An
output at the video's own rate ``r`` shows native frame ``j`` at ``j / r`` s; it takes its mouth from the model
frame nearest in time, ``k = round(j · 25 / r)`` (:func:`model_frame_for`), and the model frame ``k`` is generated
from the output frame nearest its time, ``j = round(k · r / 25)`` (:func:`native_frame_for`).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

LENGTH_MODES = ("pingpong", "loop", "freeze", "video")
AUDIO_LENGTH_MODES = ("pingpong", "loop", "freeze")  # the output follows the audio


def pingpong_indices(num_source: int, num_out: int) -> np.ndarray:
    """Source frame for each output frame: forwards, backwards, forwards... (turning frames repeat, as upstream)."""
    period = np.concatenate([np.arange(num_source), np.arange(num_source)[::-1]])  # (2n,)
    return np.resize(period, num_out)


def source_schedule(mode: str, num_source: int, num_out: int) -> np.ndarray:
    """(num_out,) int64 source frame index of each output frame under length mode ``mode``.

    A source at least as long as the output is played from its start in every mode (it is cut).
    """
    if mode not in LENGTH_MODES:
        raise ValueError(f"length mode must be one of {', '.join(LENGTH_MODES)}, got {mode!r}")
    if num_source < 1 or num_out < 0:
        raise ValueError(f"need num_source >= 1 and num_out >= 0, got {num_source}, {num_out}")
    if num_source >= num_out:
        return np.arange(num_out)
    if mode == "pingpong":
        return pingpong_indices(num_source, num_out)
    if mode == "loop":
        return np.arange(num_out) % num_source
    # freeze; "video" never gets here with a shorter source (the output follows the video), but if it did the
    # last frame would be held rather than inventing motion
    return np.minimum(np.arange(num_out), num_source - 1)


def model_frame_for(native_index: np.ndarray, native_fps: Fraction, model_fps: int) -> np.ndarray:
    """The model frame nearest in time to each native frame: round(j · model_fps / native_fps), halves up."""
    j = np.asarray(native_index, dtype=np.int64)
    ratio = Fraction(model_fps) / Fraction(native_fps)
    return (2 * j * ratio.numerator + ratio.denominator) // (2 * ratio.denominator)  # exact integer rounding


def native_frame_for(model_index: np.ndarray, native_fps: Fraction, model_fps: int) -> np.ndarray:
    """The native frame nearest in time to each model frame: round(k · native_fps / model_fps), halves up."""
    k = np.asarray(model_index, dtype=np.int64)
    ratio = Fraction(native_fps) / Fraction(model_fps)
    return (2 * k * ratio.numerator + ratio.denominator) // (2 * ratio.denominator)


def frames_for_seconds(seconds: float, fps: Fraction) -> int:
    """Frames at ``fps`` that cover ``seconds``: ceil, with a tiny tolerance for float noise (at least one)."""
    return max(1, int(np.ceil(seconds * float(fps) - 1e-6)))
