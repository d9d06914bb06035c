"""SyncScorer end to end on a short synthetic clip with random SyncNet weights (the real 13.6 M model)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from latentsync.errors import InputError
from latentsync.sync.crop import crop_faces, smooth_face_track
from latentsync.sync.mfcc import SAMPLES_PER_FRAME
from latentsync.sync.scorer import SyncScorer
from latentsync.sync.scoring import score_embeddings
from latentsync.tiny import write_random_syncnet_v2

N_FRAMES = 16  # 11 scored windows: enough for several batches of 4 and chunk boundaries at 7 and 14
BATCH = 4


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> SyncScorer:
    path = write_random_syncnet_v2(tmp_path_factory.mktemp("sync") / "syncnet_v2.model", seed=0)
    return SyncScorer.from_checkpoint(path, device="cpu", dtype=torch.float32, batch_size=BATCH)


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey face-like block whose 'mouth' opens with the audio envelope; boxes with a 2-frame gap."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, size=(N_FRAMES, 144, 176, 3), dtype=np.uint8)
    openness = (np.sin(np.arange(N_FRAMES) * 0.9) + 1) / 2
    boxes = np.empty((N_FRAMES, 4))
    for i in range(N_FRAMES):
        x1, y1 = 50 + i % 3, 30
        frames[i, y1 : y1 + 80, x1 : x1 + 70] = (180, 150, 130)
        mouth = int(4 + 20 * openness[i])
        frames[i, y1 + 55 : y1 + 55 + mouth, x1 + 20 : x1 + 50] = (40, 10, 10)
        boxes[i] = (x1, y1, x1 + 70, y1 + 80)
    boxes[5:7] = np.nan  # two frames without a detected face
    t = np.arange(N_FRAMES * SAMPLES_PER_FRAME) / 16_000
    envelope = np.repeat(openness, SAMPLES_PER_FRAME)
    audio = (0.3 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return frames, boxes, audio


def chunks(frames: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(frames), size):
        yield frames[start : start + size]


def test_score_is_finite_and_independent_of_chunk_size(scorer: SyncScorer, clip) -> None:
    frames, boxes, audio = clip
    small = scorer.score(chunks(frames, 7), boxes, audio)
    large = scorer.score(chunks(frames, 50), boxes, audio)
    assert small.distances.shape == (31,)
    assert np.isfinite(small.distances).all()
    assert np.isfinite([small.confidence, small.min_distance]).all()
    assert -15 <= small.offset <= 15 and small.confidence >= 0
    np.testing.assert_array_equal(small.distances, large.distances)
    assert (small.offset, small.confidence, small.min_distance) == (
        large.offset,
        large.confidence,
        large.min_distance,
    )


def test_streaming_equals_embedding_all_windows_at_once(scorer: SyncScorer, clip) -> None:
    frames, boxes, audio = clip
    n_windows = N_FRAMES - 5
    track = smooth_face_track(boxes)
    crops = crop_faces(frames, track)[..., ::-1]  # (16, 224, 224, 3) BGR
    video = torch.from_numpy(crops.astype(np.float32)).permute(3, 0, 1, 2)  # (3, 16, 224, 224)
    windows = torch.stack([video[:, v : v + 5] for v in range(n_windows)])  # (11, 3, 5, 224, 224)
    with torch.inference_mode():
        lips = scorer.model.embed_lips(windows)
    streamed = scorer.embed_lips(chunks(frames, 3), track, n_windows)  # carries across every boundary
    torch.testing.assert_close(streamed, lips, rtol=1e-5, atol=1e-4)
    expected = score_embeddings(lips, scorer.embed_audio(audio, n_windows))
    result = scorer.score(chunks(frames, 3), boxes, audio)
    np.testing.assert_allclose(result.distances, expected.distances, rtol=1e-5)
    assert result.offset == expected.offset


def test_frame_count_must_match_the_boxes(scorer: SyncScorer, clip) -> None:
    frames, boxes, audio = clip
    boxes, audio = boxes[:8], audio[: 8 * SAMPLES_PER_FRAME]  # 3 windows: keeps the failing runs cheap
    with pytest.raises(InputError, match="7 video frames but 8 face boxes"):
        scorer.score(chunks(frames[:7], 4), boxes, audio)
    with pytest.raises(InputError, match="more frames"):
        scorer.score(chunks(frames[:9], 8), boxes, audio)


def test_no_face_or_too_little_media_raises_input_error(scorer: SyncScorer, clip) -> None:
    frames, boxes, audio = clip
    with pytest.raises(InputError, match="no face"):
        scorer.score(chunks(frames, 8), np.full_like(boxes, np.nan), audio)
    with pytest.raises(InputError, match="at least 6 video frames"):
        scorer.score(chunks(frames[:5], 8), boxes[:5], audio)
    with pytest.raises(InputError, match="3840 audio samples"):
        scorer.score(chunks(frames, 8), boxes, audio[: 5 * SAMPLES_PER_FRAME])
