"""Per-video-frame audio windows: Whisper features (L, H, d) at 50 Hz → (frames, 10·H, d) UNet tokens.

For video frame i the reference (README §4.3, ``feature2chunks`` / ``crop_overlap_audio_window``)
takes the 10 Whisper steps ``2i − 4 … 2i + 5`` (two video frames of context before, the frame itself and
two after), clamps each index to ``[0, L − 1]`` and concatenates the H = 5 hidden states of every step
time-major: tokens ``t0 l0 … t0 l4, t1 l0 …`` → ``(50, d)``.

Frame count: the reference makes ``floor(L/2) + 2`` frames (``reference_num_frames``); this project
makes ``ceil(audio_seconds · 25)`` (``num_video_frames``). Frames whose window runs past the features
simply clamp to the last step, so :func:`audio_windows` works for any frame index ≥ 0.

The features are either the eager tensor of ``WhisperAudioEncoder.encode`` or the lazy
:class:`~latentsync.models.whisper.WhisperFeatures` of ``WhisperAudioEncoder.features`` (same values; it
runs the encoder only on the 30-s windows a frame range needs, so memory does not grow with the clip).
"""

from __future__ import annotations

import torch

from latentsync.media import SAMPLE_RATE, VIDEO_FPS
from latentsync.models.whisper import WHISPER_FRAMES_PER_SECOND, WhisperFeatures

STEPS_PER_VIDEO_FRAME = WHISPER_FRAMES_PER_SECOND // VIDEO_FPS  # 2 Whisper steps per video frame
AUDIO_FEAT_LENGTH = (2, 2)  # reference config: video frames of audio context before / after the current frame
STEPS_BEFORE = AUDIO_FEAT_LENGTH[0] * STEPS_PER_VIDEO_FRAME  # 4 steps before the frame's centre step
STEPS_FROM_CENTRE = (
    AUDIO_FEAT_LENGTH[1] + 1
) * STEPS_PER_VIDEO_FRAME  # 6: the frame's own 2 steps + 2 frames after
STEPS_PER_WINDOW = STEPS_BEFORE + STEPS_FROM_CENTRE  # 10 Whisper steps per video frame's window


def num_video_frames(num_samples: int) -> int:
    """Our output length, ``ceil(num_samples / SAMPLE_RATE · VIDEO_FPS)`` frames (in exact integers)."""
    return -(-num_samples * VIDEO_FPS // SAMPLE_RATE)


def reference_num_frames(num_steps: int) -> int:
    """The official pipeline's chunk count for L feature steps, ``floor(L/2) + 2`` (kept for comparison)."""
    return num_steps // STEPS_PER_VIDEO_FRAME + 2


def window_indices(
    start: int, count: int, num_steps: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Clamped Whisper-step indices of frames ``start … start + count − 1``: (count, 10) int64."""
    if start < 0 or count < 0:
        raise ValueError(f"frame range must be non-negative, got start={start}, count={count}")
    if num_steps < 1:
        raise ValueError(f"need at least one feature step, got num_steps={num_steps}")
    frames = torch.arange(start, start + count, device=device)
    centres = frames * WHISPER_FRAMES_PER_SECOND // VIDEO_FPS  # (count,)  = int(i · 50 / 25)
    offsets = torch.arange(-STEPS_BEFORE, STEPS_FROM_CENTRE, device=device)  # (10,)
    return (centres[:, None] + offsets[None, :]).clamp(0, num_steps - 1)  # (count, 10)


def audio_windows(features: torch.Tensor | WhisperFeatures, start: int, count: int) -> torch.Tensor:
    """Features (L, H, d) → UNet audio tokens of frames ``start … start + count − 1``: (count, 10·H, d).

    ``features``: the (L, H, d) tensor, or a lazy ``WhisperFeatures`` (only the steps these frames read are
    computed). Training's ``crop_overlap_audio_window(features, s)`` is ``audio_windows(features, s, 16)``.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be (steps, hidden_states, dim), got shape {tuple(features.shape)}")
    num_steps, num_states, dim = features.shape
    indices = window_indices(start, count, num_steps, device=features.device)  # (count, 10)
    return features[indices].reshape(
        count, STEPS_PER_WINDOW * num_states, dim
    )  # (count, 10, H, d) → (count, 10·H, d)
