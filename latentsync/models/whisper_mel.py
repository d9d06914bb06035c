"""Whisper's input: 16 kHz audio checked and turned into the normalised log-mel spectrogram of the whole clip
(reference README §4.2), and the arithmetic of mel frames, 30-s windows and 50 Hz encoder steps. Part of
:mod:`latentsync.models.whisper`, which re-exports it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from latentsync.errors import InputError
from latentsync.media import SAMPLE_RATE  # 16 kHz: Whisper's input rate, which the whole package uses

N_FFT = 400  # STFT size: 25 ms at 16 kHz → N_FFT // 2 + 1 = 201 frequency bins
HOP_LENGTH = 160  # STFT hop: 10 ms at 16 kHz
N_MELS = 80  # mel bands of the tiny/small models (librosa slaney filterbank)
MEL_FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
WINDOW_SECONDS = 30  # Whisper's fixed input length
MEL_FRAMES_PER_WINDOW = WINDOW_SECONDS * MEL_FRAMES_PER_SECOND  # 3000 mel frames per encoder call
ENCODER_STRIDE = 2  # conv2 has stride 2: two mel frames per encoder step
WHISPER_FRAMES_PER_SECOND = (
    MEL_FRAMES_PER_SECOND // ENCODER_STRIDE
)  # 50 encoder steps (hidden states) per second
MIN_SAMPLES = ENCODER_STRIDE * HOP_LENGTH  # 320 samples (20 ms): two mel frames, i.e. one encoder step
LOG_POWER_FLOOR = 1e-10  # clamp before log10 so silence gives -10, not -inf
LOG_DYNAMIC_RANGE = 8.0  # log10 units kept below the clip's maximum (80 dB)
LOG_MEL_OFFSET = 4.0  # normalised log-mel = (log10 + LOG_MEL_OFFSET) / LOG_MEL_SCALE, roughly [-1, 1]
LOG_MEL_SCALE = 4.0


def mel_filterbank(n_mels: int = N_MELS) -> torch.Tensor:
    """librosa's slaney-normalised mel filterbank for 16 kHz, n_fft 400: (n_mels, N_FFT // 2 + 1) float32."""
    import librosa  # imported here: librosa pulls in numba, too slow for module import time

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels))


def num_mel_frames(num_samples: int) -> int:
    """Mel frames of a clip: one per hop (the centred STFT's extra last frame is dropped, as Whisper does)."""
    return num_samples // HOP_LENGTH


def log10_mel_frames(
    waveform: torch.Tensor, first: int, count: int, filters: torch.Tensor, device: torch.device | None = None
) -> torch.Tensor:
    """Un-normalised log10 mel power of the clip's frames ``first … first + count − 1``: (n_mels, count).

    The frames are those of the clip's centred Hann STFT with reflect padding (frame j covers samples
    ``160·j − 200 … 160·j + 199``, mirrored at the clip's two ends only), computed from just the samples they
    cover, so a 30-s window costs the same whatever the clip's length. ``waveform`` (num_samples,) may stay on
    the CPU; the needed samples are moved to ``device`` (default: the waveform's).
    """
    num_samples = waveform.shape[0]
    if first < 0 or count < 1 or first + count > num_mel_frames(num_samples):
        raise ValueError(f"mel frames {first}…{first + count - 1} are outside the clip's "
                         f"{num_mel_frames(num_samples)} frames")
    half = N_FFT // 2
    lo, hi = first * HOP_LENGTH - half, (first + count - 1) * HOP_LENGTH + half  # [lo, hi) in clip samples
    segment = waveform[max(lo, 0) : min(hi, num_samples)].to(device or waveform.device)
    if lo < 0 or hi > num_samples:  # the clip's own ends: reflect, like torch.stft(center=True)
        pad = (max(-lo, 0), max(hi - num_samples, 0))
        segment = nn.functional.pad(segment[None, None], pad, mode="reflect")[0, 0]
    window = torch.hann_window(N_FFT, device=segment.device)
    stft = torch.stft(segment, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    power = stft.abs() ** 2  # (201, count)
    mel = filters.to(segment.device) @ power  # (n_mels, count)
    return torch.clamp(mel, min=LOG_POWER_FLOOR).log10()


def normalise_log_mel(log10_mel: torch.Tensor, clip_max: torch.Tensor | float) -> torch.Tensor:
    """Whisper's normalisation with the WHOLE clip's maximum: ``(max(x, clip_max − 8) + 4) / 4``."""
    floor = torch.as_tensor(clip_max, dtype=log10_mel.dtype, device=log10_mel.device) - LOG_DYNAMIC_RANGE
    return (torch.maximum(log10_mel, floor) + LOG_MEL_OFFSET) / LOG_MEL_SCALE


def log_mel_spectrogram(waveform: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Whisper's normalised log-mel of a whole clip: (num_samples,) → (n_mels, num_samples // HOP_LENGTH).

    Centred Hann STFT with reflect padding, last frame dropped; power × mel filters; log10 clamped at
    1e-10; floored at (clip max − 8); then ``(x + 4) / 4``. (The encoder computes the same per 30-s window
    with the clip's maximum: :class:`WhisperFeatures`.)
    """
    log10_mel = log10_mel_frames(waveform, 0, num_mel_frames(waveform.shape[0]), filters)
    return normalise_log_mel(log10_mel, log10_mel.max())


def num_feature_steps(num_samples: int) -> int:
    """L, the number of 50 Hz feature steps of a clip: Σ over 30-s windows of floor(window mel frames / 2)."""
    mel_frames = num_samples // HOP_LENGTH
    full_windows, rest = divmod(mel_frames, MEL_FRAMES_PER_WINDOW)
    return full_windows * (MEL_FRAMES_PER_WINDOW // ENCODER_STRIDE) + rest // ENCODER_STRIDE


def _check_waveform(waveform: np.ndarray) -> np.ndarray:
    if not isinstance(waveform, np.ndarray):
        raise InputError(f"audio must be a numpy array of float samples, got {type(waveform).__name__}")
    if waveform.ndim != 1:
        raise InputError(
            f"audio must be mono (a 1-D array of samples), got an array of shape {waveform.shape}"
        )
    if waveform.size == 0:
        raise InputError("the audio has no samples (zero length); give a clip with sound")
    if not np.issubdtype(waveform.dtype, np.floating):
        raise InputError(f"audio samples must be floats in [-1, 1], got dtype {waveform.dtype}")
    if waveform.size < MIN_SAMPLES:
        raise InputError(
            f"the audio is too short: {waveform.size} samples; need at least {MIN_SAMPLES}"
            f" ({MIN_SAMPLES / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz)"
        )
    if not np.isfinite(waveform).all():
        raise InputError("the audio contains NaN or infinite samples")
    return waveform.astype(np.float32, copy=False)
