"""Whisper encoder: OpenAI checkpoint loading, log-mel, pre-ln_post hidden states vs the reference golden."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from latentsync.errors import CheckpointError, InputError
from latentsync.models.whisper import (
    MIN_SAMPLES,
    SAMPLE_RATE,
    WhisperAudioEncoder,
    WhisperDims,
    encoder_state_dict_from_openai,
    log_mel_spectrogram,
    mel_filterbank,
    num_feature_steps,
    openai_decoder_shapes,
    openai_encoder_shapes,
    tiny_whisper_dims,
    write_random_whisper_checkpoint,
)

GOLDEN = "tiny_audio_golden.safetensors"
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors on a shared 2-core machine
ATOL = 1e-4

# The real whisper/tiny.pt (README §2.2 dims): 4 encoder blocks of 15 entries + conv1/conv2/pos/ln_post (7),
# 4 decoder blocks of 24 entries + token/pos embeddings + ln (4).
OFFICIAL_TINY_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51865,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, torch.Tensor]:
    tensors: dict = load_file(reference_dir / GOLDEN)
    with safe_open(str(reference_dir / GOLDEN), "pt") as f:
        tensors["_dims"] = json.loads(f.metadata()["whisper_dims"])
    return tensors


@pytest.fixture(scope="module")
def golden_checkpoint(golden, tmp_path_factory) -> Path:
    """The golden's encoder weights written as an official OpenAI file, with zeroed decoder entries."""
    dims = WhisperDims.from_mapping(golden["_dims"])
    state = {
        key.removeprefix("weights."): value for key, value in golden.items() if key.startswith("weights.")
    }
    state.update({name: torch.zeros(shape) for name, shape in openai_decoder_shapes(dims).items()})
    path = tmp_path_factory.mktemp("whisper") / "tiny.pt"
    torch.save({"dims": golden["_dims"], "model_state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def encoder(golden_checkpoint) -> WhisperAudioEncoder:
    return WhisperAudioEncoder.from_checkpoint(golden_checkpoint, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def golden_waveform(golden) -> np.ndarray:
    return golden["input.waveform_int16"].numpy().astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    return write_random_whisper_checkpoint(
        tmp_path_factory.mktemp("whisper_rand") / "tiny.pt", tiny_whisper_dims(), seed=0
    )


def test_tiny_dims_equal_golden_metadata(golden):
    assert tiny_whisper_dims() == golden["_dims"]


def test_official_tiny_key_counts():
    dims = WhisperDims.from_mapping(OFFICIAL_TINY_DIMS)
    assert len(openai_encoder_shapes(dims)) == 67
    assert len(openai_decoder_shapes(dims)) == 100
    assert openai_encoder_shapes(dims)["encoder.conv1.weight"] == (384, 80, 3)
    assert openai_decoder_shapes(dims)["decoder.token_embedding.weight"] == (51865, 384)


def test_mel_filterbank_equals_reference_asset(golden):
    filters = mel_filterbank()
    assert filters.shape == (80, 201) and filters.dtype == torch.float32
    assert torch.equal(filters, golden["const.mel_filters_80x201"])


def test_log_mel_matches_golden(golden, golden_waveform):
    mel = log_mel_spectrogram(torch.from_numpy(golden_waveform), mel_filterbank())
    assert mel.shape == (80, 3050)
    torch.testing.assert_close(mel, golden["output.log_mel"], atol=ATOL, rtol=0)


def test_features_match_golden(encoder, golden, golden_waveform):
    features = encoder.encode(golden_waveform, windows="reference")  # 30.5 s: the reference's two windows
    assert features.shape == (1525, 5, 16) == golden["output.whisper_feature"].shape
    assert num_feature_steps(golden_waveform.size) == 1525
    torch.testing.assert_close(features, golden["output.whisper_feature"], atol=ATOL, rtol=0)


def test_features_are_taken_before_ln_post(encoder, golden, golden_waveform):
    last_block = encoder.encode(golden_waveform, windows="reference")[:1500, -1]  # window 0, output of block 4
    ln_post = golden["output.encoder_seg0_ln_post"]
    assert (last_block - ln_post).abs().max() > 0.1  # using ln_post would be a different feature
    # ...and ln_post applied to our last hidden state is exactly the reference's ln_post output.
    with torch.no_grad():
        torch.testing.assert_close(encoder.encoder.layer_norm(last_block), ln_post, atol=ATOL, rtol=0)


@pytest.mark.parametrize("windows", ["seamless", "reference"])
def test_windows_per_batch_does_not_change_features(random_checkpoint, windows):
    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, 35 * SAMPLE_RATE).astype(np.float32)  # two windows
    one_at_a_time = WhisperAudioEncoder.from_checkpoint(random_checkpoint, windows_per_batch=1).encode(
        waveform, windows
    )
    batched = WhisperAudioEncoder.from_checkpoint(random_checkpoint, windows_per_batch=4).encode(waveform, windows)
    assert batched.shape == (1500 + 250, 5, 16)  # 3500 mel frames: 1500 + floor(500 / 2)
    torch.testing.assert_close(one_at_a_time, batched, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("num_samples", "steps"),
    [
        (52_800, 165),  # 3.3 s: 330 mel frames → 165
        (52_960, 165),  # 331 mel frames: the odd frame is dropped
        (MIN_SAMPLES, 1),  # 20 ms: the shortest accepted clip
    ],
)
def test_short_clip_lengths(random_checkpoint, num_samples, steps):
    waveform = np.random.default_rng(1).uniform(-0.3, 0.3, num_samples).astype(np.float32)
    features = WhisperAudioEncoder.from_checkpoint(random_checkpoint).encode(waveform)
    assert num_feature_steps(num_samples) == steps
    assert features.shape == (steps, 5, 16)
    assert torch.isfinite(features).all()


def test_silence_gives_finite_features(random_checkpoint):
    silence = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    mel = log_mel_spectrogram(torch.from_numpy(silence), mel_filterbank())
    assert torch.equal(mel, torch.full((80, 200), -1.5))  # log10(1e-10) = -10 → (−10 + 4) / 4
    features = WhisperAudioEncoder.from_checkpoint(random_checkpoint).encode(silence)
    assert features.shape == (100, 5, 16)
    assert torch.isfinite(features).all()


# ---- values against an explicit computation of the documented recipe (reference README §4.2) ---------
def explicit_log10_mel(waveform: np.ndarray) -> torch.Tensor:
    """log10 mel power of the centred, reflect-padded STFT, last frame dropped: (80, num_samples // 160)."""
    stft = torch.stft(torch.from_numpy(waveform), 400, 160, window=torch.hann_window(400), center=True,
                      pad_mode="reflect", return_complex=True)
    return torch.clamp(mel_filterbank() @ stft[:, :-1].abs() ** 2, min=1e-10).log10()


def normalised(log10: torch.Tensor, clip_max: torch.Tensor) -> torch.Tensor:
    return (torch.maximum(log10, clip_max - 8) + 4) / 4


def explicit_log_mel(waveform: np.ndarray) -> torch.Tensor:
    """The documented formula over the WHOLE clip, written out here: (80, num_samples // 160)."""
    log10 = explicit_log10_mel(waveform)
    return normalised(log10, log10.max())  # the clip's maximum, not a window's


def explicit_window(log_mel: torch.Tensor, window: int) -> torch.Tensor:
    """30-s window ``window`` of a normalised log-mel, zero-padded to 3000 frames: (80, 3000)."""
    part = log_mel[:, 3000 * window : 3000 * (window + 1)]
    return torch.nn.functional.pad(part, (0, 3000 - part.shape[1]))  # 0 in normalised log-mel space


@torch.no_grad()
def reference_hidden_states(encoder: WhisperEncoder, mel_window: torch.Tensor) -> torch.Tensor:
    """transformers' own WhisperEncoder.forward on one window, recording the input of block 1 and every
    block's output (all before ln_post) with hooks: (1500, n_layer + 1, d)."""
    states: list[torch.Tensor] = []
    hooks = [encoder.layers[0].register_forward_pre_hook(lambda module, args: states.append(args[0][0]))]
    hooks += [
        layer.register_forward_hook(lambda module, args, out: states.append(out[0])) for layer in encoder.layers
    ]
    try:
        encoder(mel_window[None])
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(states, dim=1)


def mel_inputs(encoder: WhisperAudioEncoder) -> tuple[list[torch.Tensor], object]:
    """Records every (n_mels, 3000) window the encoder's first conv receives."""
    seen: list[torch.Tensor] = []
    hook = encoder.encoder.conv1.register_forward_hook(lambda module, args, out: seen.extend(args[0].clone()))
    return seen, hook


def test_whole_clip_maximum_normalises_every_window(random_checkpoint):
    """45 s: 29 s loud noise, then 16 s about 80 dB quieter, so the second 30-s window (its STFT frames start
    at 29.9875 s) holds only quiet audio. Its log-mel must be floored at the LOUD part's maximum − 8."""
    rng = np.random.default_rng(3)
    loud = rng.uniform(-0.5, 0.5, 29 * SAMPLE_RATE)
    quiet = rng.uniform(-1e-4, 1e-4, 16 * SAMPLE_RATE)
    waveform = np.concatenate([loud, quiet]).astype(np.float32)
    encoder = WhisperAudioEncoder.from_checkpoint(random_checkpoint)
    seen, hook = mel_inputs(encoder)
    try:
        features = encoder.encode(waveform, windows="reference")
    finally:
        hook.remove()
    log10 = explicit_log10_mel(waveform)
    log_mel = normalised(log10, log10.max())
    assert len(seen) == 2  # the encoder's inputs: window 0 and window 1 (1500 real frames, then zeros)
    torch.testing.assert_close(seen[1], explicit_window(log_mel, 1), atol=1e-5, rtol=0)
    # Most of the quiet window lies below (clip max − 8) and sits on that floor; a per-window maximum
    # (floor 8 below the quiet part's own maximum) would floor none of it.
    quiet_log10 = log10[:, 3000:]
    clip_floor = (log10.max() - 8 + 4) / 4
    on_floor = (seen[1][:, :1500] - clip_floor).abs() < 1e-6
    assert on_floor.float().mean() > 0.9
    per_window = normalised(quiet_log10, quiet_log10.max())
    assert per_window.min() < clip_floor - 0.25 and (per_window - seen[1][:, :1500]).abs().max() > 0.25
    expected = reference_hidden_states(encoder.encoder, explicit_window(log_mel, 1))[:750]
    assert features.shape == (2250, 5, 16)
    torch.testing.assert_close(features[1500:], expected, atol=1e-5, rtol=0)
    lazy = encoder.features(waveform, windows="reference")
    torch.testing.assert_close(lazy.log_mel_max, log10.max(), atol=1e-5, rtol=0)
    torch.testing.assert_close(lazy.window_log_mel(1), explicit_window(log_mel, 1), atol=1e-5, rtol=0)


def test_three_windows_keep_only_the_steps_with_audio(random_checkpoint):
    """65.3 s = 6530 mel frames = windows of 3000, 3000, 530 frames → 1500 + 1500 + 265 steps."""
    waveform = np.random.default_rng(4).uniform(-0.4, 0.4, 65 * SAMPLE_RATE + 4800).astype(np.float32)
    encoder = WhisperAudioEncoder.from_checkpoint(random_checkpoint)
    features = encoder.encode(waveform, windows="reference")
    assert num_feature_steps(waveform.size) == 3265 and features.shape == (3265, 5, 16)
    log_mel = explicit_log_mel(waveform)
    for window, (start, end) in enumerate([(0, 1500), (1500, 3000), (3000, 3265)]):
        expected = reference_hidden_states(encoder.encoder, explicit_window(log_mel, window))
        torch.testing.assert_close(features[start:end], expected[: end - start], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("num_samples", "steps"), [(52_800, 165), (MIN_SAMPLES, 1)])  # 3.3 s, 20 ms
def test_short_clip_equals_the_start_of_its_zero_padded_window(random_checkpoint, num_samples, steps):
    waveform = np.random.default_rng(5).uniform(-0.3, 0.3, num_samples).astype(np.float32)
    encoder = WhisperAudioEncoder.from_checkpoint(random_checkpoint)
    window = explicit_window(explicit_log_mel(waveform), 0)  # 330 (or 2) real frames, then zeros
    assert not window[:, 2 * steps :].any()
    expected = reference_hidden_states(encoder.encoder, window)[:steps]
    torch.testing.assert_close(encoder.encode(waveform), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("waveform", "message"),
    [
        (np.zeros(0, dtype=np.float32), "no samples"),
        (np.zeros(MIN_SAMPLES - 1, dtype=np.float32), "too short"),
        (np.zeros((2, 16_000), dtype=np.float32), "mono"),
        (np.zeros(16_000, dtype=np.int16), "floats"),
        (np.full(16_000, np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_bad_audio_raises_input_error(random_checkpoint, waveform, message):
    encoder = WhisperAudioEncoder.from_checkpoint(random_checkpoint)
    with pytest.raises(InputError, match=message):
        encoder.encode(waveform)


def test_random_checkpoint_is_official_format_and_loads_weights_only(random_checkpoint):
    checkpoint = torch.load(random_checkpoint, weights_only=True)
    assert set(checkpoint) == {"dims", "model_state_dict"}
    assert checkpoint["dims"] == tiny_whisper_dims() and type(checkpoint["dims"]) is dict
    names = set(checkpoint["model_state_dict"])
    assert sum(name.startswith("encoder.") for name in names) == 67
    assert sum(name.startswith("decoder.") for name in names) == 4 + 24 * 1
    # Same seed → same file contents; a different seed → different weights.
    again = write_random_whisper_checkpoint(
        random_checkpoint.with_name("again.pt"), tiny_whisper_dims(), seed=0
    )
    other = write_random_whisper_checkpoint(
        random_checkpoint.with_name("other.pt"), tiny_whisper_dims(), seed=1
    )
    key = "encoder.blocks.0.attn.query.weight"
    assert torch.equal(
        torch.load(again, weights_only=True)["model_state_dict"][key], checkpoint["model_state_dict"][key]
    )
    assert not torch.equal(
        torch.load(other, weights_only=True)["model_state_dict"][key], checkpoint["model_state_dict"][key]
    )


def test_float16_checkpoint_loads_exact_values(tmp_path):
    """The official tiny.pt stores float16 weights; they load into the float32 encoder unchanged."""
    path = write_random_whisper_checkpoint(
        tmp_path / "fp16.pt", tiny_whisper_dims(), seed=2, dtype=torch.float16
    )
    stored = torch.load(path, weights_only=True)["model_state_dict"]["encoder.blocks.3.mlp.2.weight"]
    loaded = WhisperAudioEncoder.from_checkpoint(path).encoder.layers[3].fc2.weight
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded, stored.float())


def test_key_map_renames_every_encoder_entry(random_checkpoint):
    checkpoint = torch.load(random_checkpoint, weights_only=True)
    dims = WhisperDims.from_mapping(checkpoint["dims"])
    state = encoder_state_dict_from_openai(checkpoint["model_state_dict"], dims)
    assert len(state) == 67
    assert torch.equal(
        state["layers.2.self_attn.k_proj.weight"],
        checkpoint["model_state_dict"]["encoder.blocks.2.attn.key.weight"],
    )
    assert torch.equal(
        state["embed_positions.weight"], checkpoint["model_state_dict"]["encoder.positional_embedding"]
    )
    # Without the decoder entries (a stripped file) the encoder still loads.
    encoder_only = {k: v for k, v in checkpoint["model_state_dict"].items() if k.startswith("encoder.")}
    assert len(encoder_state_dict_from_openai(encoder_only, dims)) == 67


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("encoder.blocks.1.mlp_ln.bias"), "missing"),
        (lambda sd: sd.__setitem__("encoder.blocks.4.attn.query.weight", torch.zeros(16, 16)), "unexpected"),
        (lambda sd: sd.pop("decoder.ln.bias"), "text-decoder entries"),
        (lambda sd: sd.__setitem__("encoder.conv2.weight", torch.zeros(16, 16, 5)), "shape"),
    ],
)
def test_mismatched_state_dict_raises_checkpoint_error(random_checkpoint, edit, message):
    checkpoint = torch.load(random_checkpoint, weights_only=True)
    state = dict(checkpoint["model_state_dict"])
    edit(state)
    with pytest.raises(CheckpointError, match=message):
        encoder_state_dict_from_openai(state, WhisperDims.from_mapping(checkpoint["dims"]))


def test_bad_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        WhisperAudioEncoder.from_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "garbage.pt").write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(CheckpointError, match="cannot read"):
        WhisperAudioEncoder.from_checkpoint(tmp_path / "garbage.pt")
    torch.save({"state_dict": {}}, tmp_path / "unet_like.pt")
    with pytest.raises(CheckpointError, match="not an OpenAI Whisper checkpoint"):
        WhisperAudioEncoder.from_checkpoint(tmp_path / "unet_like.pt")
    dims = dict(tiny_whisper_dims(), n_mels=128)
    write_random_whisper_checkpoint(tmp_path / "mels128.pt", dims, seed=0)
    with pytest.raises(CheckpointError, match="n_mels=128"):
        WhisperAudioEncoder.from_checkpoint(tmp_path / "mels128.pt")
