"""Per-video-frame audio windows and frame counts vs the reference's feature2chunks golden."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latentsync.audio_features import (
    STEPS_BEFORE,
    STEPS_FROM_CENTRE,
    STEPS_PER_WINDOW,
    audio_windows,
    num_video_frames,
    reference_num_frames,
    window_indices,
)

GOLDEN = "tiny_audio_golden.safetensors"
TRAIN_WINDOW_FRAMES = 16  # the reference's crop_overlap_audio_window length (num_frames=16)


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(reference_dir / GOLDEN)


def test_window_constants():
    assert (STEPS_BEFORE, STEPS_FROM_CENTRE, STEPS_PER_WINDOW) == (4, 6, 10)


def test_indices_match_golden(golden):
    features = golden["output.whisper_feature"]  # (1525, 5, 16)
    expected = golden["output.whisper_chunk_feature_indices"]  # (764, 10)
    assert reference_num_frames(features.shape[0]) == expected.shape[0] == 764
    indices = window_indices(0, expected.shape[0], features.shape[0])
    assert indices.dtype == torch.int64
    assert torch.equal(indices, expected.long())
    assert indices[0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5]


def test_windows_match_golden_chunks(golden):
    features = golden["output.whisper_feature"]
    first = audio_windows(features, 0, 32)
    last = audio_windows(features, 764 - 32, 32)
    assert first.shape == last.shape == (32, 50, 16)
    torch.testing.assert_close(first, golden["output.whisper_chunks_first32"], atol=1e-6, rtol=0)
    torch.testing.assert_close(last, golden["output.whisper_chunks_last32"], atol=1e-6, rtol=0)


def test_training_window_is_a_frame_range(golden):
    """crop_overlap_audio_window(features, 7) = audio_windows(features, 7, 16)."""
    window = audio_windows(golden["output.whisper_feature"], 7, TRAIN_WINDOW_FRAMES)
    assert window.shape == (16, 50, 16)
    torch.testing.assert_close(window, golden["output.train_window_start7"], atol=1e-6, rtol=0)


def test_product_frames_are_a_prefix_of_reference_chunks(golden):
    num_samples = golden["input.waveform_int16"].numel()  # 30.5 s
    assert num_video_frames(num_samples) == 763  # ceil(30.5 · 25); the reference makes 764
    ours = audio_windows(golden["output.whisper_feature"], 0, num_video_frames(num_samples))
    torch.testing.assert_close(
        ours[-32 + 1 :], golden["output.whisper_chunks_last32"][:-1], atol=1e-6, rtol=0
    )


def test_tokens_are_time_major():
    steps, states = 12, 5
    # features[t, l, 0] = 10·t + l makes every token's (time, layer) readable.
    codes = (10 * torch.arange(steps)[:, None] + torch.arange(states)[None, :]).float()
    features = codes[:, :, None].expand(steps, states, 3)  # (L, H, d)
    window = audio_windows(features, 3, 1)[0, :, 0]  # frame 3: steps 2..11
    expected = [10 * t + layer for t in range(2, 12) for layer in range(states)]
    assert window.tolist() == expected


def test_frames_past_the_end_clamp_to_the_last_step():
    features = torch.randn(10, 5, 4)
    far = audio_windows(features, 100, 2)
    assert far.shape == (2, 50, 4)
    assert torch.equal(far, features[9].repeat(10, 1).expand(2, 50, 4))
    assert window_indices(4, 1, 10).tolist() == [[4, 5, 6, 7, 8, 9, 9, 9, 9, 9]]


def test_any_frame_range_equals_a_slice_of_the_whole():
    features = torch.randn(37, 5, 8)
    whole = audio_windows(features, 0, 25)
    assert torch.equal(audio_windows(features, 5, 7), whole[5:12])
    assert audio_windows(features, 5, 0).shape == (0, 50, 8)


def test_single_step_features():
    features = torch.randn(1, 5, 8)
    assert torch.equal(audio_windows(features, 0, 3), features[0].repeat(10, 1).expand(3, 50, 8))


@pytest.mark.parametrize(
    ("num_samples", "frames"),
    [(1, 1), (639, 1), (640, 1), (641, 2), (16_000, 25), (16_001, 26), (52_800, 83)],  # 640 samples per frame
)
def test_num_video_frames_is_ceil_of_seconds_times_fps(num_samples, frames):
    assert num_video_frames(num_samples) == frames


def test_invalid_ranges_raise():
    features = torch.randn(5, 5, 4)
    with pytest.raises(ValueError, match="non-negative"):
        audio_windows(features, -1, 2)
    with pytest.raises(ValueError, match="non-negative"):
        audio_windows(features, 0, -2)
    with pytest.raises(ValueError, match="steps, hidden_states, dim"):
        audio_windows(features[0], 0, 1)
    with pytest.raises(ValueError, match="at least one feature step"):
        audio_windows(features[:0], 0, 1)
