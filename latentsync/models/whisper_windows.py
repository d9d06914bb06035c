"""Which 30-s windows the Whisper encoder sees, and which window gives each feature step (``windows="reference"``
or ``"seamless"``). Part of :mod:`latentsync.models.whisper`, which re-exports it.

Which 30-s windows the encoder sees, and which window gives each feature step.

The encoder reads exactly 1500 steps and attends across all of them, so a step's features depend on where
it sits in its window: at an edge it has no context on one side and the window's first or last positional
embedding. "reference": the official windows 0-30 s, 30-60 s, ..., the last zero-padded; the features jump
at every 30-s boundary. "seamless": up to 30 s the reference's single window (the same values, bit for bit);
longer clips get full windows spread evenly from the clip's start to its end, at most 20 s apart (so
neighbours overlap by >= 10 s, no padding), each step read from one window except in a 2-s cross-fade at
the middle of each overlap. Every step is then >= 4 s from the edge of any window it is read from (>= 5 s
outside the cross-fades), except at the clip's own start and end. Up to 1.5x the reference's encoder calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentsync.models.whisper_mel import ENCODER_STRIDE, MEL_FRAMES_PER_WINDOW, WHISPER_FRAMES_PER_SECOND

WINDOW_SCHEMES = ("seamless", "reference")
DEFAULT_WINDOW_SCHEME = "seamless"
STEPS_PER_ENCODER_WINDOW = MEL_FRAMES_PER_WINDOW // ENCODER_STRIDE  # 1500 steps per encoder call
SEAMLESS_MAX_HOP_STEPS = 20 * WHISPER_FRAMES_PER_SECOND  # windows start <= 20 s apart: >= 10 s overlaps
CROSSFADE_STEPS = 2 * WHISPER_FRAMES_PER_SECOND  # a 2-s linear cross-fade, centred in each overlap


@dataclass(frozen=True)
class EncoderWindow:
    """One encoder call's input: mel frames ``2·start … 2·start + mel_frames − 1``, zero-padded to 3000."""

    start: int  # its first feature step (first mel frame ENCODER_STRIDE · start)
    mel_frames: int  # mel frames of real audio, <= 3000; the rest of the window is padding


@dataclass(frozen=True)
class Segment:
    """Steps ``start … end − 1`` read from window ``window``, or cross-faded linearly from it to ``fade_to``."""

    start: int
    end: int
    window: int
    fade_to: int | None = None  # the next window, whose weight rises across the segment

    def fade_weights(self, first: int, stop: int) -> torch.Tensor:
        """Weights of ``fade_to`` at steps ``first … stop − 1``: ``(t − start + ½) / length``, all in (0, 1)."""
        return (torch.arange(first, stop, dtype=torch.float64) - self.start + 0.5) / (self.end - self.start)


@dataclass(frozen=True)
class WindowPlan:
    """A clip's encoder windows and its segments (contiguous, covering steps ``0 … num_steps − 1``)."""

    scheme: str
    num_steps: int
    windows: tuple[EncoderWindow, ...]
    segments: tuple[Segment, ...]

    def segments_in(self, first: int, stop: int) -> list[Segment]:
        """The segments holding any of steps ``first … stop − 1``."""
        return [s for s in self.segments if s.start < stop and s.end > first]

    def windows_for(self, first: int, stop: int) -> list[int]:
        """The windows that steps ``first … stop − 1`` are read from (ascending, consecutive)."""
        used = {s.window for s in self.segments_in(first, stop)}
        used |= {s.fade_to for s in self.segments_in(first, stop) if s.fade_to is not None}
        return sorted(used)

    @property
    def crossfades(self) -> list[Segment]:
        return [s for s in self.segments if s.fade_to is not None]


def check_window_scheme(windows: str) -> str:
    if windows not in WINDOW_SCHEMES:
        raise ValueError(f"windows must be one of {', '.join(WINDOW_SCHEMES)}, got {windows!r}")
    return windows


def plan_windows(num_mel_frames: int, windows: str = DEFAULT_WINDOW_SCHEME) -> WindowPlan:
    """The windows and segments of a clip of ``num_mel_frames`` mel frames (``num_feature_steps`` steps)."""
    check_window_scheme(windows)
    if num_mel_frames < ENCODER_STRIDE:
        raise ValueError(f"need at least {ENCODER_STRIDE} mel frames (one step), got {num_mel_frames}")
    num_steps = num_mel_frames // ENCODER_STRIDE  # = num_feature_steps: every window but the last is even
    if windows == "seamless" and num_steps > STEPS_PER_ENCODER_WINDOW:
        return _seamless_plan(num_steps)
    # The reference's tiling, also "seamless" up to 1500 steps: one window, or two for 3001 mel frames, the second
    # holding one frame and giving no step (no read needs it; it is encoded only when windows_per_batch puts it in
    # window 0's encoder call, as before).
    count = -(-num_mel_frames // MEL_FRAMES_PER_WINDOW)
    encoder_windows = tuple(
        EncoderWindow(k * STEPS_PER_ENCODER_WINDOW,
                      min(num_mel_frames - k * MEL_FRAMES_PER_WINDOW, MEL_FRAMES_PER_WINDOW))
        for k in range(count)
    )  # fmt: skip
    segments = tuple(
        Segment(w.start, w.start + w.mel_frames // ENCODER_STRIDE, k)
        for k, w in enumerate(encoder_windows)
        if w.mel_frames >= ENCODER_STRIDE
    )
    return WindowPlan(windows, num_steps, encoder_windows, segments)


def _seamless_plan(num_steps: int) -> WindowPlan:
    """Full windows starting at 0 … num_steps − 1500, evenly spread and <= SEAMLESS_MAX_HOP_STEPS apart."""
    last_start = num_steps - STEPS_PER_ENCODER_WINDOW  # > 0
    count = -(-last_start // SEAMLESS_MAX_HOP_STEPS) + 1
    starts = [k * last_start // (count - 1) for k in range(count)]
    segments, first = [], 0
    for k in range(count - 1):
        overlap_start, overlap_end = starts[k + 1], starts[k] + STEPS_PER_ENCODER_WINDOW  # >= 500 steps
        fade_start = (overlap_start + overlap_end) // 2 - CROSSFADE_STEPS // 2
        segments += [Segment(first, fade_start, k), Segment(fade_start, fade_start + CROSSFADE_STEPS, k, k + 1)]
        first = fade_start + CROSSFADE_STEPS
    segments.append(Segment(first, num_steps, count - 1))
    windows = tuple(EncoderWindow(start, MEL_FRAMES_PER_WINDOW) for start in starts)
    return WindowPlan("seamless", num_steps, windows, tuple(segments))


# The measure of a boundary glitch (README: "Long speech"), shared by tests/test_whisper_windows.py and
# benchmarks/bench_whisper_windows.py.
JUMP_NEAR_STEPS = WHISPER_FRAMES_PER_SECOND  # "within 1 s" of a boundary or a cross-fade point, in 50 Hz steps


def consecutive_jumps(features: torch.Tensor) -> torch.Tensor:
    """L2 distance between consecutive feature steps ``(L, ...)`` -> ``(L - 1,)``; jump t -> t + 1 sits at t + 1/2."""
    flat = features.reshape(features.shape[0], -1).double().cpu()  # (L, H·d)
    return (flat[1:] - flat[:-1]).norm(dim=1)


def boundary_jump_factor(features: torch.Tensor, points: list[int], near_steps: int = JUMP_NEAR_STEPS) -> float:
    """Largest jump within ``near_steps`` of ``points`` over the 99th percentile of the jumps elsewhere."""
    jumps = consecutive_jumps(features)
    position = torch.arange(len(jumps), dtype=torch.float64) + 0.5
    near = torch.zeros(len(jumps), dtype=torch.bool)
    for point in points:
        near |= (position - point).abs() <= near_steps
    return (jumps[near].max() / torch.quantile(jumps[~near], 0.99)).item()
