"""Whisper-tiny audio encoder: OpenAI checkpoint → transformers encoder → 5 hidden states per 20 ms.

LatentSync conditions its UNet on Whisper features computed the way its vendored copy of OpenAI's
``transcribe`` computed them (reference README §4.2):

1. a log-mel spectrogram of the **whole clip** (global-max normalisation over the clip, not per window);
2. 30-s windows of 3000 mel frames, the last one zero-padded (in normalised log-mel space);
3. per window the encoder's input to block 1 (after the positional embedding) and the output of each
   block, all **before** ``ln_post``, stacked → ``(1500, n_layer + 1, d)``;
4. per window only the steps covered by real audio are kept, ``floor(window_mel_frames / 2)``, and the
   windows are concatenated → ``(L, n_layer + 1, d)`` at 50 steps per second.

That is ``windows="reference"``. The default, ``windows="seamless"``, differs only for speech longer than
30 s, whose features the reference makes jump at every 30-s boundary (official issue #151): overlapping
windows, each step taken from a window where it has context on both sides (:func:`plan_windows`).

The log-mel front end is :mod:`latentsync.models.whisper_mel`, the window plans
:mod:`latentsync.models.whisper_windows` (both re-exported here). ``WhisperAudioEncoder.features`` gives
these features lazily (:class:`WhisperFeatures`: the clip's log-mel maximum up front, then the encoder per
30-s window on demand), so memory does not grow with the clip; ``encode`` materialises the same values as one
tensor.

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

from latentsync.errors import CheckpointError
from latentsync.media import SAMPLE_RATE  # noqa: F401 (16 kHz: Whisper's input rate, re-exported)
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
from latentsync.models.whisper_mel import (  # noqa: F401 (the log-mel front end, re-exported)
    ENCODER_STRIDE,
    HOP_LENGTH,
    LOG_DYNAMIC_RANGE,
    LOG_MEL_OFFSET,
    LOG_MEL_SCALE,
    LOG_POWER_FLOOR,
    MEL_FRAMES_PER_SECOND,
    MEL_FRAMES_PER_WINDOW,
    MIN_SAMPLES,
    N_FFT,
    N_MELS,
    WHISPER_FRAMES_PER_SECOND,
    WINDOW_SECONDS,
    _check_waveform,
    log10_mel_frames,
    log_mel_spectrogram,
    mel_filterbank,
    normalise_log_mel,
    num_feature_steps,
    num_mel_frames,
)
from latentsync.models.whisper_windows import (  # noqa: F401 (the window plans, re-exported)
    CROSSFADE_STEPS,
    DEFAULT_WINDOW_SCHEME,
    SEAMLESS_MAX_HOP_STEPS,
    STEPS_PER_ENCODER_WINDOW,
    WINDOW_SCHEMES,
    EncoderWindow,
    Segment,
    WindowPlan,
    _seamless_plan,
    check_window_scheme,
    plan_windows,
)

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

    def features(self, waveform: np.ndarray, windows: str = DEFAULT_WINDOW_SCHEME) -> WhisperFeatures:
        """The clip's features, evaluated lazily 30-s window by window (see :class:`WhisperFeatures`).

        ``windows``: "seamless" (default) or "reference" (the official 30-s windows; see :func:`plan_windows`).
        Checks the audio (``InputError`` as :meth:`encode`) and computes the whole-clip log-mel maximum now;
        the encoder runs only when steps are read.
        """
        return WhisperFeatures(self, waveform, windows)

    def encode(self, waveform: np.ndarray, windows: str = DEFAULT_WINDOW_SCHEME) -> torch.Tensor:
        """(num_samples,) float32 at 16 kHz → (L, n_layer + 1, d) on ``self.device`` in ``self.dtype``.

        ``L = num_feature_steps(num_samples)``; raises ``InputError`` for empty, too short, non-mono or
        non-finite audio. Holds all L steps at once (~23 MB per minute for tiny in float32); streaming callers
        use :meth:`features`, whose values are identical.
        """
        return self.features(waveform, windows).materialise()


class WhisperFeatures:
    """Lazily evaluated Whisper features of one clip: the tensor :meth:`WhisperAudioEncoder.encode` returns,
    without holding it.

    Holds the waveform (not copied), the whole clip's log-mel maximum (computed at construction, one 30-s
    stretch at a time), the clip's :class:`WindowPlan` and the encoder outputs of the windows the latest read
    touched. Reading steps (``features[indices]``, what :func:`latentsync.inference.audio_features.audio_windows` does)
    runs the encoder on the windows those steps are read from, in the same groups of ``windows_per_batch``
    consecutive windows, on the same normalised log-mel, as ``encode`` does: the same computations, so the same
    values (tested bit for bit on CPU). Memory is bounded by the windows one read spans (two groups at most,
    for a video-frame range that crosses a group boundary), whatever the clip's length.

    Behaves like the (L, n_layer + 1, d) tensor for ``shape``, ``ndim``, ``device``, ``dtype``, ``len`` and
    integer-tensor indexing along the steps.
    """

    def __init__(self, encoder: WhisperAudioEncoder, waveform: np.ndarray,
                 windows: str = DEFAULT_WINDOW_SCHEME) -> None:  # fmt: skip
        self.encoder = encoder
        self._samples = torch.from_numpy(_check_waveform(waveform))  # (num_samples,) CPU, shares the memory
        num_samples = self._samples.shape[0]
        self.num_mel_frames = num_mel_frames(num_samples)
        self.plan = plan_windows(self.num_mel_frames, windows)
        self.num_windows = len(self.plan.windows)
        self.num_steps = num_feature_steps(num_samples)
        assert self.plan.num_steps == self.num_steps
        self._windows_per_group = encoder.windows_per_batch  # encode()'s grouping: one encoder call each
        with torch.inference_mode():
            # The whole clip's maximum (un-normalised log10 units), the reference's normalisation constant,
            # taken over 30-s stretches so that memory stays flat.
            maxima = [self._log10_mel(first, min(MEL_FRAMES_PER_WINDOW, self.num_mel_frames - first)).max()
                      for first in range(0, self.num_mel_frames, MEL_FRAMES_PER_WINDOW)]  # fmt: skip
            self.log_mel_max = torch.stack(maxima).max()  # 0-d float32 on the encoder's device
        self._groups: dict[int, list[torch.Tensor]] = {}  # group -> its windows' (1500, n_layer + 1, d)

    @property
    def windows(self) -> str:
        """The window scheme, "seamless" or "reference"."""
        return self.plan.scheme

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
        """The windows whose encoder outputs are held now (ascending)."""
        return [w for g in sorted(self._groups) for w in self._group_windows(g)]

    def window_log_mel(self, window: int) -> torch.Tensor:
        """The encoder input of window ``window`` of the plan: (n_mels, 3000) float32, normalised with the
        clip's maximum; a window shorter than 30 s is zero-padded in normalised space (the reference's
        ``pad_or_trim``)."""
        spec = self.plan.windows[window]
        with torch.inference_mode():
            log10_mel = self._log10_mel(ENCODER_STRIDE * spec.start, spec.mel_frames)
            log_mel = normalise_log_mel(log10_mel, self.log_mel_max)
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
        block = self._read(lo, hi + 1, self._groups)  # (hi − lo + 1, H, d)
        return block[(steps - lo).to(block.device)]

    @torch.inference_mode()
    def materialise(self) -> torch.Tensor:
        """All L steps as one tensor (L, n_layer + 1, d): what ``encode`` returns. Caches nothing."""
        groups: dict[int, list[torch.Tensor]] = {}  # its own: each window encoded once, in order
        result = torch.cat([self._read(s.start, s.end, groups) for s in self.plan.segments])
        assert result.shape == self.shape
        return result

    def _read(self, first: int, stop: int, groups: dict[int, list[torch.Tensor]]) -> torch.Tensor:
        """Steps ``first … stop − 1``: (stop − first, H, d). Encodes the groups of windows they are read from
        into ``groups``, and drops the other groups held there."""
        needed = {w // self._windows_per_group for w in self.plan.windows_for(first, stop)}
        for group in [g for g in groups if g not in needed]:
            del groups[group]  # keep only what this read touches
        for group in sorted(needed - set(groups)):
            groups[group] = self._encode_group(group)

        def states(window: int) -> torch.Tensor:  # (1500, H, d) of a window of the plan
            return groups[window // self._windows_per_group][window % self._windows_per_group]

        parts = []
        for segment in self.plan.segments_in(first, stop):
            a, b = max(first, segment.start), min(stop, segment.end)
            start = self.plan.windows[segment.window].start
            part = states(segment.window)[a - start : b - start]  # (b − a, H, d)
            if segment.fade_to is not None:
                start = self.plan.windows[segment.fade_to].start
                weight = segment.fade_weights(a, b).to(part.device, part.dtype)[:, None, None]  # (b − a, 1, 1)
                part = torch.lerp(part, states(segment.fade_to)[a - start : b - start], weight)
            parts.append(part)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _log10_mel(self, first: int, count: int) -> torch.Tensor:
        return log10_mel_frames(self._samples, first, count, self.encoder.mel_filters, self.device)

    def _group_windows(self, group: int) -> range:
        per_group = self._windows_per_group
        return range(group * per_group, min((group + 1) * per_group, self.num_windows))

    def _encode_group(self, group: int) -> list[torch.Tensor]:
        """Windows ``group·B … group·B + B − 1`` of the plan (B = windows_per_batch) in one encoder call:
        one (1500, n_layer + 1, d) tensor each (steps past a window's real audio are never read)."""
        with torch.inference_mode():
            mel = torch.stack([self.window_log_mel(w) for w in self._group_windows(group)])  # (b, n_mels, 3000)
            return list(self.encoder.hidden_states(mel.to(self.dtype)))  # b x (1500, n_layer + 1, d)
