"""SyncNet's audio features: python_speech_features MFCCs and their 5-frame windows.

The official scorer reads a 16 kHz mono int16 wav and calls ``python_speech_features.mfcc(audio, 16000)``
with every default (25 ms rectangular window, 10 ms step, 26 filters, 512-point FFT, pre-emphasis 0.97,
lifter 22, 13 coefficients with c0 replaced by log energy) on the raw int16 values, without normalisation.
We call the same library so the features match to float64 rounding (see tests/test_sync_mfcc.py).
"""

from __future__ import annotations

import numpy as np

from latentsync.errors import InputError
from latentsync.media import SAMPLE_RATE, VIDEO_FPS  # SyncNet works at 16 kHz and 25 fps, like the package
from latentsync.sync.syncnet import FRAMES_PER_WINDOW, MFCC_STEPS_PER_WINDOW

SYNCNET_FPS = VIDEO_FPS
MFCC_STEPS_PER_SECOND = 100  # python_speech_features' default winstep of 10 ms
MFCC_STEPS_PER_FRAME = MFCC_STEPS_PER_SECOND // SYNCNET_FPS  # = 4
SAMPLES_PER_FRAME = SAMPLE_RATE // SYNCNET_FPS  # = 640
INT16_SCALE = 32768  # float audio in [-1, 1] times this gives the int16 values the official code reads
INT16_MIN, INT16_MAX = -32768, 32767
assert MFCC_STEPS_PER_WINDOW == MFCC_STEPS_PER_FRAME * FRAMES_PER_WINDOW


def to_int16_scale(audio: np.ndarray) -> np.ndarray:
    """Audio as float64 on the int16 scale the official scorer sees.

    Integer arrays are taken as already int16-scaled. Float arrays are taken as [-1, 1] samples and mapped
    like ffmpeg's float -> s16 conversion (scale by 32768, round to nearest, clip), which is exact for audio
    that was decoded from 16-bit PCM as ``int16 / 32768``.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise InputError(f"audio must be a 1-D mono signal, got an array of shape {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        return audio.astype(np.float64)
    if not np.issubdtype(audio.dtype, np.floating):
        raise InputError(f"audio must hold float or integer samples, got dtype {audio.dtype}")
    if not np.isfinite(audio).all():
        raise InputError("audio contains NaN or infinite samples")
    return np.clip(np.rint(audio.astype(np.float64) * INT16_SCALE), INT16_MIN, INT16_MAX)


def compute_mfcc(audio: np.ndarray) -> np.ndarray:
    """16 kHz mono audio (float in [-1, 1], or int16-scaled integers) -> MFCC (13, T) float64, 100 steps/s."""
    # Imported here: only scoring needs it, and `import latentsync.sync` should stay light.
    import python_speech_features

    signal = to_int16_scale(audio)
    if signal.size == 0:
        raise InputError("audio has no samples")
    return python_speech_features.mfcc(signal, SAMPLE_RATE).T  # (T, 13) -> (13, T)


def num_windows(n_video_frames: int, n_samples: int) -> int:
    """How many 5-frame windows the official scorer evaluates: min(frames, samples // 640) - 5.

    (The official loop stops one window short of the last full one; we keep that count for parity.)
    May be zero or negative for clips shorter than 6 frames; callers reject those.
    """
    return min(n_video_frames, n_samples // SAMPLES_PER_FRAME) - FRAMES_PER_WINDOW


def audio_windows(mfcc: np.ndarray, n_windows: int) -> np.ndarray:
    """MFCC (13, T) -> windows (N, 1, 13, 20) float32: window v holds columns 4v ... 4v + 19."""
    needed = MFCC_STEPS_PER_FRAME * (n_windows - 1) + MFCC_STEPS_PER_WINDOW
    if n_windows < 1 or mfcc.shape[1] < needed:
        raise InputError(
            f"{n_windows} SyncNet windows need at least {needed} MFCC steps, the audio gives {mfcc.shape[1]}"
        )
    # (13, T - 19, 20) -> every 4th start -> (N, 13, 20)
    views = np.lib.stride_tricks.sliding_window_view(mfcc, MFCC_STEPS_PER_WINDOW, axis=1)
    windows = views[:, : needed - MFCC_STEPS_PER_WINDOW + 1 : MFCC_STEPS_PER_FRAME].transpose(1, 0, 2)
    return np.ascontiguousarray(windows[:, None], dtype=np.float32)  # (N, 1, 13, 20)
