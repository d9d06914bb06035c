"""Small faces (issue 11): a 176x144 talking-head clip whose ~50 px face the detector misses at native size.

The clip is the demo video scaled (aspect kept) to 144x144 and centred on a 176x144 grey canvas, made here with
ffmpeg. dlib's HOG detector (real weights) finds nothing in it at native size; the tracker searches again on a 2x
upscaled copy, maps the landmarks back, and keeps faces below the reference's 50x80 px.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from latentsync import media
from latentsync.errors import InputError
from latentsync.faces import FaceTracker, detect_upscaled, load_landmark_backend
from latentsync.faces.detection import MAX_UPSCALED_SIDE, choose_face, is_small

from .conftest import DEMO_AUDIO, DEMO_VIDEO

SMALL_SIZE = (176, 144)  # width, height: QCIF, where the 44 px face came from
FRAMES = 10


def small_face_clip(dst: Path, frames: int = FRAMES) -> Path:
    """The demo video scaled to 144x144 and padded to 176x144 (the face becomes ~50 px)."""
    width, height = SMALL_SIZE
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-frames:v", str(frames),
                    "-vf", f"scale={height}:{height},pad={width}:{height}:(ow-iw)/2:0:gray",
                    "-an", "-c:v", "libx264", "-crf", "12", str(dst)], check=True)  # fmt: skip
    return dst


@pytest.fixture(scope="module")
def dlib_backend():
    pytest.importorskip("dlib", reason="the dlib backend is a test dependency (requirements-test.txt)")
    return load_landmark_backend("dlib")


@pytest.fixture(scope="module")
def small_frames(tmp_path_factory) -> np.ndarray:
    return media.read_video_frames(small_face_clip(tmp_path_factory.mktemp("small") / "qcif.mp4"))


def test_the_small_face_is_missed_at_native_size_and_found_upscaled(dlib_backend, small_frames):
    frame = small_frames[0]
    assert frame.shape == (144, 176, 3)
    assert choose_face(dlib_backend.detect(frame), dlib_backend.min_score) is None  # today's refusal
    faces = detect_upscaled(dlib_backend, frame)
    assert len(faces) == 1
    face = faces[0]
    assert 40 <= face.width <= 70 and 40 <= face.height <= 70 and is_small(face)
    # Landmarks mapped back to the small frame agree with those found on the full-size demo frame, scaled down.
    big = media.read_video_frames(DEMO_VIDEO, max_frames=1)[0]
    (big_face,) = dlib_backend.detect(big)
    scale = 144 / big.shape[0]
    expected = (big_face.landmarks + 0.5) * scale - 0.5 + np.array([(176 - 144) / 2, 0], np.float32)
    error = np.linalg.norm(face.landmarks - expected, axis=1)  # (68,) px in the small frame
    assert error.mean() < 2.0 and face.landmarks.min() >= 0


def test_tracker_keeps_small_faces_and_flags_them(dlib_backend, small_frames):
    tracker = FaceTracker(dlib_backend, small_faces=True)
    tracker.update(small_frames)
    track = tracker.finish()
    assert track.valid.all() and track.detected.all() and track.small.all()
    # The reference's rules alone (no upscaling, 50x80 px minimum; the default) refuse the clip.
    strict = FaceTracker(dlib_backend)
    strict.update(small_frames)
    with pytest.raises(InputError, match="no face was found"):
        strict.finish()


def test_normal_faces_are_not_flagged_small(dlib_backend):
    frames = media.read_video_frames(DEMO_VIDEO, max_frames=3)
    tracker = FaceTracker(dlib_backend, small_faces=True)
    tracker.update(frames)
    track = tracker.finish()
    assert track.valid.all() and not track.small.any()


def test_upscaled_search_does_not_turn_a_faceless_frame_into_a_face(dlib_backend):
    """The astronaut with her face blanked: at 2x, HOG sees a 95x100 px "face" on the suit; it is not taken."""
    from skimage import data

    frame = data.astronaut().copy()
    (face,) = dlib_backend.detect(frame)
    x1, y1, x2, y2 = face.box.astype(int)
    frame[max(y1 - 20, 0) : y2 + 20, max(x1 - 20, 0) : x2 + 20] = 128
    assert dlib_backend.detect(frame) == []
    assert detect_upscaled(dlib_backend, frame) == []
    tracker = FaceTracker(dlib_backend, small_faces=True)
    tracker.update(frame[None])
    with pytest.raises(InputError, match="no face was found"):
        tracker.finish()


def test_upscaled_search_respects_size_limits(dlib_backend):
    big = np.full((MAX_UPSCALED_SIDE // 2 + 8, 64, 3), 128, np.uint8)
    assert detect_upscaled(dlib_backend, big) == []  # would exceed MAX_UPSCALED_SIDE: skipped
    # A backend that shrinks frames for detection would undo the upscaling: skipped too.
    limited = load_landmark_backend("dlib", max_detect_side=200)
    frame = cv2.resize(media.read_video_frames(DEMO_VIDEO, max_frames=1)[0], (176, 144))
    assert detect_upscaled(limited, frame) == []


@pytest.mark.slow
def test_small_face_clip_is_lip_synced_with_a_quality_note(tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTSYNC_CACHE_DIR", str(tmp_path / "face-tracks"))  # not the user's cache
    if tiny_pipeline.face_backend.name != "dlib":
        pytest.skip("the tiny pipeline's face backend has random weights; this needs dlib's real detector")
    video = small_face_clip(tmp_path / "qcif.mp4", frames=15)
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: int(0.6 * media.SAMPLE_RATE)])
    from latentsync.inference.pipeline import LipSyncOptions

    result = tiny_pipeline(video, audio, tmp_path / "out.mp4", LipSyncOptions(steps=1))
    assert result.num_frames == 15 and result.frames_with_face == 15 and result.small_face_frames == 15
    assert "smaller than 50x80 px in 15 frames" in result.summary() and "quality may be lower" in result.summary()
    source = media.read_video_frames(video).astype(np.int16)
    synced = media.read_video_frames(result.output).astype(np.int16)
    assert synced.shape == source.shape and np.abs(synced - source).max() > 30  # the face went through the model
