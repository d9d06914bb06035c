"""The Wav2Lip mel spectrogram StableSyncNet listens to (reference README §5.2, training/README §1b).

16 kHz mono float audio -> ``(80, T)`` log-mel in [-4, 4] at 80 columns per second:
pre-emphasis 0.97 -> |STFT| (n_fft 800, hop 200, periodic Hann, centred with zero padding, as librosa 0.10) ->
Slaney mel basis (80 bins, 55-7600 Hz) -> ``20 log10(max(1e-5, x)) - 20`` -> ``clip(8 (S + 100) / 100 - 4, -4, 4)``.
Computed in float64 like the reference (its golden matches to ~1e-13); returned as float32.

A 16-frame SyncNet window starting at video frame ``k`` is columns ``int(80 k / 25)`` .. ``+ 52``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from latentsync.media import SAMPLE_RATE, VIDEO_FPS

PREEMPHASIS = 0.97
N_FFT = 800  # 50 ms at 16 kHz
HOP_LENGTH = 200  # 12.5 ms: 80 mel columns per second
N_MELS = 80
MEL_FMIN, MEL_FMAX = 55.0, 7600.0
MIN_LEVEL_DB = -100.0  # amplitude floor 10 ** (-100 / 20) = 1e-5
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0  # symmetric normalisation to [-4, 4]
MEL_COLUMNS_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 80
SYNCNET_FRAMES = 16  # video frames per StableSyncNet window
# 16 frames at 25 fps = 0.64 s = 51.2 mel columns, rounded up as the reference does: ceil(16 / 5 * 16) = 52.
MEL_WINDOW = math.ceil(SYNCNET_FRAMES * MEL_COLUMNS_PER_SECOND / VIDEO_FPS)


@functools.lru_cache(maxsize=1)
def _mel_basis() -> torch.Tensor:
    import librosa  # heavy (numba): imported only when a mel is computed

    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=MEL_FMIN, fmax=MEL_FMAX)
    return torch.from_numpy(basis)  # (80, 401) float32, as the reference's basis


def wav2lip_mel(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(n,) 16 kHz mono audio in [-1, 1] -> (80, 1 + n // 200) float32 mel in [-4, 4]."""
    wav = torch.as_tensor(np.asarray(waveform), dtype=torch.float64)
    if wav.ndim != 1 or wav.numel() == 0:
        raise ValueError(f"waveform must be a non-empty 1-D array, got shape {tuple(wav.shape)}")
    emphasised = torch.cat([wav[:1], wav[1:] - PREEMPHASIS * wav[:-1]])  # y[n] = x[n] - 0.97 x[n-1]
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    spec = torch.stft(emphasised, N_FFT, HOP_LENGTH, N_FFT, window, center=True, pad_mode="constant",
                      return_complex=True).abs()  # (401, T)
    mel = _mel_basis().double() @ spec  # (80, T)
    level_db = 20 * torch.log10(mel.clamp(min=10 ** (MIN_LEVEL_DB / 20))) - REF_LEVEL_DB
    normalised = 2 * MAX_ABS_VALUE * (level_db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS_VALUE
    return normalised.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE).float()


def mel_start(frame: int) -> int:
    """First mel column of the window of video frame ``frame``: ``int(80 * frame / 25)``."""
    return int(MEL_COLUMNS_PER_SECOND * (frame / VIDEO_FPS))


def mel_window(mel: torch.Tensor, frame: int) -> torch.Tensor:
    """The (1, 80, 52) SyncNet input for the 16 frames from ``frame``; ValueError if the audio ends first."""
    start = mel_start(frame)
    if start + MEL_WINDOW > mel.shape[-1]:
        raise ValueError(f"the mel has {mel.shape[-1]} columns; the window of frame {frame} needs "
                         f"{start + MEL_WINDOW}")
    return mel[None, :, start:start + MEL_WINDOW]
