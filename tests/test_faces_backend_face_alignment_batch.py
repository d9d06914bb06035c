"""FaceAlignmentBackend.detect_batch: batched detection and landmarks equal detect() frame by frame (real frames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentsync.faces.backend_face_alignment import FaceAlignmentBackend, decode_sfd_outputs
from latentsync.faces.batch_detection import detect_frames
from latentsync.tiny import SFD_FIRING_LAYER, quiet_random_detector

DEMO_VIDEO = Path(__file__).resolve().parents[1] / "assets" / "demo_video.mp4"
NUM_FRAMES = 3  # two detector batches of 2 (one partial) on CPU
DETECT_SIDE = 320  # detect on a small copy: the random detector's cost, not its answers, depends on it
ROUNDING_PX = 1e-3  # batch-shaped CPU kernels round differently; boxes and landmarks are in pixels


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    from latentsync.media import iter_video_frames

    if not DEMO_VIDEO.is_file():
        pytest.skip(f"{DEMO_VIDEO} is missing (a committed asset)")
    return next(iter_video_frames(DEMO_VIDEO, NUM_FRAMES, count=NUM_FRAMES))  # (n, H, W, 3) RGB


@pytest.fixture(scope="module")
def backend() -> FaceAlignmentBackend:
    """Random FAN (one hourglass instead of four: the same code, a quarter of the cost) + the quiet random SFD,
    its firing layer given random box regression (so the decoding's arithmetic is exercised; the random
    detector's boxes barely move between frames, the landmarks do)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.manual_seed(0)
    detector, fan = quiet_random_detector(s3fd()), FAN(1).eval()
    with torch.no_grad():
        loc = getattr(detector, f"{SFD_FIRING_LAYER}_mbox_loc")
        loc.weight.normal_(0.0, 0.02)
        loc.bias.normal_(0.0, 0.2)
    return FaceAlignmentBackend(detector, fan, device="cpu", max_detect_side=DETECT_SIDE)


@pytest.mark.slow  # SFD + FAN on 3 real frames twice: ~1-3 min on the shared 2-core machine
def test_batched_faces_equal_frame_by_frame(backend, frames) -> None:
    one_by_one = [backend.detect(frame) for frame in frames]  # face-alignment's own batch_detect decoding
    backend.detect_batch_size = 2
    try:
        batched = backend.detect_batch(frames)
    finally:
        backend.detect_batch_size = 1
    assert len(batched) == len(frames)
    assert sum(len(faces) for faces in one_by_one) >= len(frames)  # every frame has a face to compare
    first_faces = np.stack([faces[0].landmarks for faces in one_by_one])  # (n, 68, 2)
    assert np.ptp(first_faces, axis=0).max() > 1.0  # landmarks follow each frame's pixels: a real comparison
    for k, (expected, got) in enumerate(zip(one_by_one, batched)):
        assert len(got) == len(expected), f"frame {k}"
        for a, b in zip(expected, got):
            np.testing.assert_allclose(b.box, a.box, atol=ROUNDING_PX, rtol=0, err_msg=f"frame {k}")
            assert abs(b.score - a.score) <= 1e-6
            np.testing.assert_allclose(b.landmarks, a.landmarks, atol=ROUNDING_PX, rtol=0, err_msg=f"frame {k}")
            assert b.landmarks.dtype == np.float32 and b.box.dtype == np.float32
    assert len(detect_frames(backend, frames[:2])) == 2  # the tracker's entry point uses detect_batch


def test_decoding_keeps_only_this_images_candidates() -> None:
    """face-alignment's batch decoding gives every image the anchors where any image scored; ours does not."""
    scores = np.zeros((2, 2, 2, 2), np.float32)  # (b, background/face, h, w) of one level, stride 4
    scores[0, 1, 0, 1] = 0.9
    scores[1, 1, 1, 0] = 0.8
    regression = np.zeros((2, 4, 2, 2), np.float32)
    regression[1, :, 1, 0] = [1.0, -1.0, 0.0, np.log(2) / 0.2]
    first, second = decode_sfd_outputs([scores, regression], 0), decode_sfd_outputs([scores, regression], 1)
    # anchor at column 1, row 0 of stride 4: centre (6, 2), side 16
    np.testing.assert_allclose(first, [[-2.0, -6.0, 14.0, 10.0, 0.9]], rtol=1e-6)
    # column 0, row 1: centre (2, 6) shifted by (+1, -1)·0.1·16, height doubled: (3.6, 4.4), 16 × 32
    np.testing.assert_allclose(second, [[3.6 - 8, 4.4 - 16, 3.6 + 8, 4.4 + 16, 0.8]], rtol=1e-6)
    assert decode_sfd_outputs([scores * 0, regression], 0).shape == (0, 5)


class _PerFrameOnly:
    """A backend with only the protocol's detect(): detect_frames falls back to it frame by frame."""

    name = "per_frame"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame_rgb: np.ndarray) -> list:
        self.calls += 1
        return []


def test_backends_without_batches_are_called_per_frame(frames) -> None:
    backend = _PerFrameOnly()
    assert detect_frames(backend, frames) == [[]] * len(frames) and backend.calls == len(frames)
