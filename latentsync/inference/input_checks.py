"""A request's inputs checked up front, cheaply enough to run before any model loads: the speaker point, and
(ffprobe alone, no decoding) that the face input has a picture and the speech has sound.

The CLI runs these before loading the models; the pipeline runs them again at the start of every call. Errors are
:class:`InputError` naming the argument, the rule and the value (files by their base name).
"""

from __future__ import annotations

import math
import os

from latentsync import media
from latentsync.errors import InputError

LARGEST_FACE = "largest"  # LipSyncOptions.speaker: the largest face starts the track (the reference's choice)


def parse_speaker(text: str) -> tuple[float, float] | None:
    """``"largest"`` → None; ``"x,y"`` → (x, y): pixels, or fractions of the width and height when both are <= 1.

    Raises :class:`InputError` naming the argument, the rule and the value."""
    if not isinstance(text, str):
        raise InputError(f"speaker must be a string, 'largest' or 'x,y', got {text!r}")
    if text.strip().lower() == LARGEST_FACE:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        x, y = (float(part) for part in parts)
    except ValueError:
        raise InputError(
            f"speaker must be 'largest' or a point 'x,y' on the speaker's face in the first frame (pixels, or "
            f"fractions of the width and height such as '0.3,0.4'), got {text!r}"
        ) from None
    if not (math.isfinite(x) and math.isfinite(y) and x >= 0 and y >= 0):
        raise InputError(f"speaker: the point's coordinates must be finite and >= 0, got {text!r}")
    return x, y


def speaker_point(text: str, width: int, height: int) -> tuple[float, float] | None:
    """The speaker point in pixels of a ``width`` x ``height`` frame (None: the largest face); InputError if the
    point lies outside the frame."""
    point = parse_speaker(text)
    if point is None:
        return None
    x, y = point
    if x <= 1 and y <= 1:
        x, y = x * (width - 1), y * (height - 1)
    if x > width - 1 or y > height - 1:
        raise InputError(
            f"speaker: the point ({point[0]:g}, {point[1]:g}) lies outside the {width}x{height} frame "
            f"(x must be below {width} and y below {height} pixels, or both fractions <= 1)"
        )
    return x, y


def probe_face_input(video: str | os.PathLike) -> media.MediaInfo:
    """Check with ffprobe alone that ``video`` has a picture: a video that plays, or a still photo (PNG, JPEG,
    WebP...: then ``info.still_image``); its info. :class:`InputError` otherwise."""
    info = media.probe(video)
    if info.has_video and info.still_image:  # a photo: shown for the whole speech
        if info.width <= 0 or info.height <= 0:
            raise InputError(
                f"{info.path.name} is not a valid image: its picture could not be read. Please upload a photo "
                "(PNG, JPEG or WebP) or a video of a face."
            )
        return info
    return media.check_video(info)  # a picture that plays: not audio only, not empty


def probe_inputs(video: str | os.PathLike, audio: str | os.PathLike) -> media.MediaInfo:
    """Check with ffprobe alone (no decoding) that ``video`` has a picture (:func:`probe_face_input`) and ``audio``
    has sound; the video's info.

    Cheap enough to run before loading any model, so a wrong file is reported before anything slow happens.
    """
    info = probe_face_input(video)
    media.check_audio(media.probe(audio))
    return info
