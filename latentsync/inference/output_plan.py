"""The output's timeline, decided once per call: how many frames at which rate, which source frame each output
frame shows, which source frame each model (25 fps) frame is generated from, and the audio the model hears.

The length modes and the native-rate maps are :mod:`latentsync.inference.timeline`'s; this module applies them to one
request (a video of ``num_source`` frames at the output's rate, a speech waveform at 16 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from latentsync import media
from latentsync.inference.timeline import model_frame_for, native_frame_for, source_schedule


@dataclass(frozen=True)
class OutputPlan:
    """How long the output is and which source frame each output frame shows."""

    fps: Fraction  # the output's frame rate
    schedule: np.ndarray  # (num_out,) source frame per output frame (at ``fps``)
    model_sources: np.ndarray  # (num_model,) source frame per model (25 fps) frame
    model_for_output: np.ndarray  # (num_out,) model frame whose mouth each output frame shows
    waveform: np.ndarray  # the model's audio: the speech, cut or padded with silence in length mode "video"
    audio_seconds: float | None  # mux the speech cut/padded to this length (None: as it is)


def plan_output(mode: str, num_source: int, fps: Fraction, waveform: np.ndarray, num_out_audio: int) -> OutputPlan:
    """The output's frames: ``num_out_audio`` (the speech's length at ``fps``) unless ``mode`` is "video"."""
    audio_seconds = None
    num_out = num_out_audio
    if mode == "video":
        num_out = num_source
        audio_seconds = float(num_out / fps)
        samples = round(audio_seconds * media.SAMPLE_RATE)
        waveform = np.pad(waveform[:samples], (0, max(samples - len(waveform), 0)))
    schedule = source_schedule(mode, num_source, num_out)
    num_model = media.frames_for_duration(float(num_out / fps))
    if fps == media.VIDEO_FPS:
        out_for_model = model_for_output = np.arange(num_out)
    else:
        out_for_model = np.minimum(native_frame_for(np.arange(num_model), fps, media.VIDEO_FPS), num_out - 1)
        model_for_output = np.minimum(model_frame_for(np.arange(num_out), fps, media.VIDEO_FPS), num_model - 1)
    return OutputPlan(fps, schedule, schedule[out_for_model], model_for_output, waveform, audio_seconds)
