"""Whisper-tiny audio encoder: OpenAI checkpoint → transformers encoder → 5 hidden states per 20 ms.

LatentSync conditions its UNet on Whisper features computed the way its vendored copy of OpenAI's
``transcribe`` computed them (reference README §4.2):

1. a log-mel spectrogram of the **whole clip** (global-max normalisation over the clip, not per window);
2. 30-s windows of 3000 mel frames, the last one zero-padded (in normalised log-mel space);
3. per window the encoder's input to block 1 (after the positional embedding) and the output of each
   block, all **before** ``ln_post``, stacked → ``(1500, n_layer + 1, d)``;
4. per window only the steps covered by real audio are kept, ``floor(window_mel_frames / 2)``, and the
   windows are concatenated → ``(L, n_layer + 1, d)`` at 50 steps per second.

``WhisperAudioEncoder.features`` gives these features lazily (:class:`WhisperFeatures`: the clip's log-mel
maximum up front, then the encoder per 30-s window on demand), so memory does not grow with the clip;
``encode`` materialises the same values as one tensor.

The network is ``transformers.WhisperEncoder`` (same maths as OpenAI's ``AudioEncoder``; attention
scales q by d_head^-0.5 instead of q and k by d_head^-0.25 each, equal up to rounding). Weights come
from the official OpenAI checkpoint format (``whisper/tiny.pt``: ``{"dims": {...},
"model_state_dict": {...}}``) through an explicit key map; the text decoder's keys are counted and
dropped. The hidden states are collected by walking the encoder's layers here, because transformers'
``output_hidden_states`` replaces its last entry with the post-layer-norm output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from latentsync.errors import CheckpointError, InputError
from latentsync.media import SAMPLE_RATE  # 16 kHz: Whisper's input rate, which the whole package uses
from latentsync.models.whisper_checkpoint import (  # noqa: F401 (the checkpoint format, re-exported)
    OPENAI_DECODER_KEYS_PER_BLOCK,
    WhisperDims,
    encoder_key_map,
    encoder_state_dict_from_openai,
    load_openai_checkpoint,
    openai_decoder_shapes,
    openai_encoder_shapes,
    write_random_whisper_checkpoint,
)

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

# 30-s windows per encoder call. One: a 1500-step encoder call gains little from batching, and a lazily read
# clip (WhisperFeatures) then holds at most the two windows a read crosses (2 x 11.5 MB for tiny in float32).
DEFAULT_WINDOWS_PER_BATCH = 1

def tiny_whisper_dims() -> dict[str, int]:
    """Dims of the reference's random tiny Whisper (``tiny_audio_golden``): 4 layers like tiny, width 16."""
    return {
        "n_mels": N_MELS,
        "n_audio_ctx": MEL_FRAMES_PER_WINDOW // ENCODER_STRIDE,
        "n_audio_state": 16,
        "n_audio_head": 2,
        "n_audio_layer": 4,
        "n_vocab": 64,
        "n_text_ctx": 8,
        "n_text_state": 16,
        "n_text_head": 2,
        "n_text_layer": 1,
    }


# ----------------------------------------------------------------------------------------------------
# Checkpoint format: OpenAI names and shapes, and the map onto transformers' WhisperEncoder.

def _encoder_config(dims: WhisperDims) -> WhisperConfig:
    """A transformers config whose encoder equals the OpenAI dims (decoder fields: defaults, unused)."""
    return WhisperConfig(
        num_mel_bins=dims.n_mels,
        max_source_positions=dims.n_audio_ctx,
        d_model=dims.n_audio_state,
        encoder_attention_heads=dims.n_audio_head,
        encoder_layers=dims.n_audio_layer,
        encoder_ffn_dim=4 * dims.n_audio_state,
        activation_function="gelu",  # exact (erf) GELU, as OpenAI's nn.GELU / F.gelu
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        attn_implementation="sdpa",
    )


def _check_dims_supported(dims: WhisperDims) -> None:
    if dims.n_mels != N_MELS:
        raise CheckpointError(
            f"Whisper checkpoint has n_mels={dims.n_mels}; only {N_MELS}-band models are supported"
        )
    if dims.n_audio_ctx * ENCODER_STRIDE != MEL_FRAMES_PER_WINDOW:
        raise CheckpointError(
            f"Whisper checkpoint has n_audio_ctx={dims.n_audio_ctx};"
            f" expected {MEL_FRAMES_PER_WINDOW // ENCODER_STRIDE} (a {WINDOW_SECONDS}-s window)"
        )


# ----------------------------------------------------------------------------------------------------
# Log-mel input.


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


# ----------------------------------------------------------------------------------------------------
# The encoder.


class WhisperAudioEncoder:
    """Audio (16 kHz mono float32) → LatentSync's Whisper features ``(L, n_layer + 1, d)`` at 50 Hz."""

    def __init__(
        self,
        encoder: WhisperEncoder,
        dims: WhisperDims,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        windows_per_batch: int = DEFAULT_WINDOWS_PER_BATCH,
    ) -> None:
        if windows_per_batch < 1:
            raise ValueError(f"windows_per_batch must be >= 1, got {windows_per_batch}")
        _check_dims_supported(dims)
        self.dims = dims
        self.device = torch.device(device)
        self.dtype = dtype
        self.windows_per_batch = windows_per_batch
        self.encoder = encoder.to(device=self.device, dtype=dtype).eval().requires_grad_(False)
        self.mel_filters = mel_filterbank(dims.n_mels).to(self.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        windows_per_batch: int = DEFAULT_WINDOWS_PER_BATCH,
    ) -> WhisperAudioEncoder:
        """Load an OpenAI-format checkpoint (``whisper/tiny.pt``) into ``transformers.WhisperEncoder``."""
        dims, openai_state = load_openai_checkpoint(path)
        _check_dims_supported(dims)
        state = encoder_state_dict_from_openai(openai_state, dims)
        encoder = WhisperEncoder(_encoder_config(dims))
        # The official file stores float16; load_state_dict copies into the float32 parameters.
        encoder.load_state_dict(state, strict=True)
        return cls(encoder, dims, device=device, dtype=dtype, windows_per_batch=windows_per_batch)

    @property
    def feature_dim(self) -> int:
        """d, the width of every hidden state (384 for tiny = the UNet's cross_attention_dim)."""
        return self.dims.n_audio_state

    @property
    def num_hidden_states(self) -> int:
        """5 for tiny: the block-1 input plus each block's output."""
        return self.dims.n_audio_layer + 1

    def hidden_states(self, mel_windows: torch.Tensor) -> torch.Tensor:
        """(b, n_mels, 3000) normalised log-mel → (b, 1500, n_layer + 1, d), all before ``ln_post``."""
        encoder: WhisperEncoder = self.encoder
        x = nn.functional.gelu(encoder.conv1(mel_windows))  # (b, d, 3000)
        x = nn.functional.gelu(encoder.conv2(x))  # (b, d, 1500)
        x = x.permute(0, 2, 1) + encoder.embed_positions.weight  # (b, 1500, d)
        states = [x]
        for layer in encoder.layers:
            x = layer(x, None)  # no attention mask: every window is a full 1500-step sequence
            states.append(x)
        return torch.stack(states, dim=2)  # (b, 1500, n_layer + 1, d)

    def features(self, waveform: np.ndarray) -> WhisperFeatures:
        """The clip's features, evaluated lazily 30-s window by window (see :class:`WhisperFeatures`).

        Checks the audio (``InputError`` as :meth:`encode`) and computes the whole-clip log-mel maximum now;
        the encoder runs only when steps are read.
        """
        return WhisperFeatures(self, waveform)

    def encode(self, waveform: np.ndarray) -> torch.Tensor:
        """(num_samples,) float32 at 16 kHz → (L, n_layer + 1, d) on ``self.device`` in ``self.dtype``.

        ``L = num_feature_steps(num_samples)``; raises ``InputError`` for empty, too short, non-mono or
        non-finite audio. Holds all L steps at once (~23 MB per minute for tiny in float32); streaming callers
        use :meth:`features`, whose values are identical.
        """
        return self.features(waveform).materialise()


class WhisperFeatures:
    """Lazily evaluated Whisper features of one clip: the tensor :meth:`WhisperAudioEncoder.encode` returns,
    without holding it.

    Holds the waveform (not copied), the whole clip's log-mel maximum (computed at construction, one 30-s
    window at a time) and the encoder outputs of the windows the latest read touched. Reading steps
    (``features[indices]``, what :func:`latentsync.inference.audio_features.audio_windows` does) runs the encoder on
    the 30-s windows those steps lie in, in the same groups of ``windows_per_batch`` windows, on the same
    normalised log-mel, as ``encode`` does: the same computations, so the same values (tested bit for bit on
    CPU). Memory is bounded by the windows one read spans (two groups at most, for a video-frame range that
    crosses a group boundary), whatever the clip's length.

    Behaves like the (L, n_layer + 1, d) tensor for ``shape``, ``ndim``, ``device``, ``dtype``, ``len`` and
    integer-tensor indexing along the steps.
    """

    def __init__(self, encoder: WhisperAudioEncoder, waveform: np.ndarray) -> None:
        self.encoder = encoder
        self._samples = torch.from_numpy(_check_waveform(waveform))  # (num_samples,) CPU, shares the memory
        num_samples = self._samples.shape[0]
        self.num_mel_frames = num_mel_frames(num_samples)
        self.num_windows = -(-self.num_mel_frames // MEL_FRAMES_PER_WINDOW)
        self.num_steps = num_feature_steps(num_samples)
        self._windows_per_group = encoder.windows_per_batch  # encode()'s grouping: one encoder call each
        self._steps_per_group = self._windows_per_group * (MEL_FRAMES_PER_WINDOW // ENCODER_STRIDE)
        with torch.inference_mode():
            # The whole clip's maximum (un-normalised log10 units), the reference's normalisation constant.
            window_maxima = [self._log10_mel(w).max() for w in range(self.num_windows)]
            self.log_mel_max = torch.stack(window_maxima).max()  # 0-d float32 on the encoder's device
        self._groups: dict[int, torch.Tensor] = {}  # group index -> (steps of its windows, n_layer + 1, d)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.num_steps, self.encoder.num_hidden_states, self.encoder.feature_dim))

    @property
    def ndim(self) -> int:
        return 3

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.dtype

    def __len__(self) -> int:
        return self.num_steps

    @property
    def cached_windows(self) -> list[int]:
        """The 30-s windows whose encoder outputs are held now (ascending)."""
        per_group = self._windows_per_group
        return [w for g in sorted(self._groups)
                for w in range(g * per_group, min((g + 1) * per_group, self.num_windows))]

    def window_log_mel(self, window: int) -> torch.Tensor:
        """The encoder input of 30-s window ``window``: (n_mels, 3000) float32, normalised with the clip's
        maximum; the last window is zero-padded in normalised space (as the reference's ``pad_or_trim``)."""
        with torch.inference_mode():
            log_mel = normalise_log_mel(self._log10_mel(window), self.log_mel_max)
            return nn.functional.pad(log_mel, (0, MEL_FRAMES_PER_WINDOW - log_mel.shape[1]))

    @torch.inference_mode()
    def __getitem__(self, steps: torch.Tensor) -> torch.Tensor:
        """``features[steps]`` for an integer tensor of step indices (any shape) → steps.shape + (H, d)."""
        if not isinstance(steps, torch.Tensor) or steps.is_floating_point() or steps.is_complex():
            raise TypeError("WhisperFeatures is indexed with an integer tensor of step indices, "
                            f"got {type(steps).__name__}")
        if steps.numel() == 0:
            return torch.empty((*steps.shape, *self.shape[1:]), dtype=self.dtype, device=self.device)
        lo, hi = int(steps.min()), int(steps.max())
        if lo < 0 or hi >= self.num_steps:
            raise IndexError(f"feature steps {lo}…{hi} are outside 0…{self.num_steps - 1}")
        first, last = lo // self._steps_per_group, hi // self._steps_per_group
        for group in [g for g in self._groups if not first <= g <= last]:
            del self._groups[group]  # keep only what this read touches
        for group in range(first, last + 1):
            if group not in self._groups:
                self._groups[group] = self._encode_group(group)
        groups = [self._groups[g] for g in range(first, last + 1)]
        block = groups[0] if len(groups) == 1 else torch.cat(groups)  # (steps of groups first…last, H, d)
        return block[(steps - first * self._steps_per_group).to(block.device)]

    @torch.inference_mode()
    def materialise(self) -> torch.Tensor:
        """All L steps as one tensor (L, n_layer + 1, d): what ``encode`` returns. Caches nothing."""
        num_groups = -(-self.num_windows // self._windows_per_group)
        result = torch.cat([self._encode_group(g) for g in range(num_groups)])
        assert result.shape == self.shape
        return result

    def _log10_mel(self, window: int) -> torch.Tensor:
        first = window * MEL_FRAMES_PER_WINDOW
        count = min(self.num_mel_frames - first, MEL_FRAMES_PER_WINDOW)
        return log10_mel_frames(self._samples, first, count, self.encoder.mel_filters, self.device)

    def _encode_group(self, group: int) -> torch.Tensor:
        """Windows ``group·B … group·B + B − 1`` (B = windows_per_batch) in one encoder call; per window only
        the steps covered by real audio, ``floor(window_mel_frames / 2)``, are kept."""
        per_group = self._windows_per_group
        windows = range(group * per_group, min((group + 1) * per_group, self.num_windows))
        with torch.inference_mode():
            mel = torch.stack([self.window_log_mel(w) for w in windows])  # (b, n_mels, 3000)
            states = self.encoder.hidden_states(mel.to(self.dtype))  # (b, 1500, n_layer + 1, d)
            kept = []
            for window, window_states in zip(windows, states):
                mel_frames = min(self.num_mel_frames - window * MEL_FRAMES_PER_WINDOW, MEL_FRAMES_PER_WINDOW)
                kept.append(window_states[: mel_frames // ENCODER_STRIDE])
            return torch.cat(kept)  # (steps, n_layer + 1, d)
