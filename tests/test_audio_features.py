"""Per-video-frame audio windows and frame counts vs the reference's feature2chunks golden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from latentsync.inference.audio_features import (
    STEPS_BEFORE,
    STEPS_FROM_CENTRE,
    STEPS_PER_WINDOW,
    audio_windows,
    num_video_frames,
    reference_num_frames,
    window_indices,
)
from latentsync.models.whisper import (
    SAMPLE_RATE,
    WhisperAudioEncoder,
    WhisperFeatures,
    tiny_whisper_dims,
    write_random_whisper_checkpoint,
)

GOLDEN = "tiny_audio_golden.safetensors"
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors on a shared 2-core machine
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


# ---- lazily evaluated features (WhisperAudioEncoder.features) ------------------------------------------
# 65.3 s = 3265 steps. Reference: 30-s windows of 1500, 1500 and 265 steps. Seamless: full windows at steps 0, 882
# and 1765, cross-fades over steps 1141-1240 and 2023-2122.
LAZY_CLIP_SAMPLES = 65 * SAMPLE_RATE + 4800
FRAME_CHUNK = 16  # the pipeline's frames per UNet call


@pytest.fixture(scope="module")
def whisper_checkpoint(tmp_path_factory) -> Path:
    return write_random_whisper_checkpoint(
        tmp_path_factory.mktemp("whisper") / "tiny.pt", tiny_whisper_dims(), seed=0
    )


@pytest.fixture(scope="module")
def long_clip() -> np.ndarray:
    return np.random.default_rng(7).uniform(-0.4, 0.4, LAZY_CLIP_SAMPLES).astype(np.float32)


@pytest.fixture(scope="module", params=[1, 2], ids=["windows_per_batch=1", "windows_per_batch=2"])
def encoder(request, whisper_checkpoint) -> WhisperAudioEncoder:
    return WhisperAudioEncoder.from_checkpoint(whisper_checkpoint, windows_per_batch=request.param)


@pytest.fixture(scope="module", params=["seamless", "reference"])
def windows(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def eager(encoder, long_clip, windows) -> torch.Tensor:
    return encoder.encode(long_clip, windows)


def encoder_calls(encoder: WhisperAudioEncoder) -> tuple[list[int], object]:
    """Records how many 30-s windows every encoder call gets."""
    calls: list[int] = []
    hook = encoder.encoder.conv1.register_forward_hook(
        lambda module, args, out: calls.append(args[0].shape[0])
    )
    return calls, hook


def test_lazy_features_look_like_the_eager_tensor(encoder, eager, long_clip, windows):
    lazy = encoder.features(long_clip, windows)
    assert isinstance(lazy, WhisperFeatures) and lazy.windows == windows
    assert lazy.shape == eager.shape == (3265, 5, 16) and len(lazy) == 3265 and lazy.ndim == 3
    assert (lazy.device, lazy.dtype, lazy.num_windows) == (eager.device, eager.dtype, 3)
    assert lazy.cached_windows == []  # nothing encoded until read
    assert torch.equal(lazy.materialise(), eager)


@pytest.mark.parametrize(
    ("start", "count"),
    [
        (0, FRAME_CHUNK),  # clip start: clamped to step 0
        (740, FRAME_CHUNK),  # frames 740-755 read steps 1476-1515: crosses the 30-s window boundary
        (745, 1),  # one frame whose 10 steps (1486-1495) end just before the boundary
        (748, 1),  # one frame reading steps 1492-1501: both sides of the boundary
        (1495, FRAME_CHUNK),  # crosses the 60-s boundary (step 3000)
        (565, FRAME_CHUNK),  # steps 1126-1165: into the seamless scheme's first cross-fade
        (1010, FRAME_CHUNK),  # steps 2016-2055: into its second one
        (595, FRAME_CHUNK),  # steps 1186-1225: inside the first cross-fade
        (1633 - FRAME_CHUNK, FRAME_CHUNK),  # the clip's last 16 frames (ceil(65.3 * 25) = 1633)
        (1630, FRAME_CHUNK),  # runs past the end: clamped to the last step
        (0, 0),
    ],
)
def test_lazy_windows_equal_eager_windows(encoder, eager, long_clip, windows, start, count):
    lazy = encoder.features(long_clip, windows)
    assert torch.equal(audio_windows(lazy, start, count), audio_windows(eager, start, count))


def test_a_sequential_pass_encodes_every_window_once_and_holds_only_what_a_read_touches(
    encoder, eager, long_clip, windows
):
    lazy = encoder.features(long_clip, windows)
    per_group = encoder.windows_per_batch
    assert [w.start for w in lazy.plan.windows] == ([0, 1500, 3000] if windows == "reference" else [0, 882, 1765])
    calls, hook = encoder_calls(encoder)
    try:
        held = []
        for start in range(0, num_video_frames(LAZY_CLIP_SAMPLES), FRAME_CHUNK):
            count = min(FRAME_CHUNK, num_video_frames(LAZY_CLIP_SAMPLES) - start)
            assert torch.equal(audio_windows(lazy, start, count), audio_windows(eager, start, count))
            steps = window_indices(start, count, len(lazy))
            read = lazy.plan.windows_for(int(steps.min()), int(steps.max()) + 1)  # the windows these steps need
            touched_groups = range(read[0] // per_group, read[-1] // per_group + 1)
            touched = [w for g in touched_groups for w in range(g * per_group, min((g + 1) * per_group, 3))]
            assert lazy.cached_windows == touched, start
            held.append(len(lazy.cached_windows))
    finally:
        hook.remove()
    assert sum(calls) == 3  # each window through the encoder exactly once
    assert max(calls) <= per_group and max(held) <= 2 * per_group  # two groups at most, at a boundary


def test_lazy_features_work_like_the_pipeline_uses_them(encoder, eager, long_clip, windows):
    """audio_windows(...)[mask on features.device]: the pipeline's read of the frames that have a face."""
    lazy = encoder.features(long_clip, windows)
    keep = torch.tensor([True, False] * 8)
    picked = audio_windows(lazy, 752, FRAME_CHUNK)[keep.to(lazy.device)]
    assert picked.shape == (8, 50, 16)
    assert torch.equal(picked, audio_windows(eager, 752, FRAME_CHUNK)[keep])


def test_short_clip_lazy_equals_eager(whisper_checkpoint):
    waveform = np.random.default_rng(8).uniform(-0.3, 0.3, 52_800).astype(np.float32)  # 3.3 s
    encoder = WhisperAudioEncoder.from_checkpoint(whisper_checkpoint)
    lazy, eager = encoder.features(waveform), encoder.encode(waveform)
    frames = num_video_frames(waveform.size)
    assert torch.equal(audio_windows(lazy, 0, frames), audio_windows(eager, 0, frames))


def test_lazy_features_reject_bad_indices(encoder, long_clip, windows):
    lazy = encoder.features(long_clip, windows)
    with pytest.raises(IndexError, match="outside 0…3264"):
        lazy[torch.tensor([3265])]
    with pytest.raises(IndexError, match="outside"):
        lazy[torch.tensor([-1, 5])]
    with pytest.raises(TypeError, match="integer tensor"):
        lazy[torch.tensor([1.0])]
    with pytest.raises(TypeError, match="integer tensor"):
        lazy[0:5]
