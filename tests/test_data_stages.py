"""The data toolchain's stages, one clip at a time, on a corpus built from the demo assets (random model weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentsync import media
from latentsync.data import decisions, stages_media, stages_models
from latentsync.data.ffmpeg import run_ffmpeg
from latentsync.data.models import WorkerModels
from latentsync.data.options import DataOptions
from latentsync.data.synthetic import build_corpus, write_test_checkpoints
from tests.conftest import ASSETS_DIR

PART_SECONDS = 2  # corpus parts of 50 frames: cuts at frame 50
CUT = PART_SECONDS * media.VIDEO_FPS


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    build_corpus(folder, ASSETS_DIR, seconds=PART_SECONDS)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> WorkerModels:
    checkpoints = write_test_checkpoints(tmp_path_factory.mktemp("ckpt"))
    return WorkerModels(DataOptions(checkpoints=checkpoints, device="cpu"))


@pytest.fixture(scope="module")
def resampled(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resampled")
    for rel in ("talk.mp4", "two_faces.mp4", "silent.mp4", "cut.mp4", "faceless.mp4"):
        stages_media.resample(raw / rel, rel, out, None, None)
    return out


@pytest.fixture(scope="module")
def aligned(resampled, models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faces")
    options = DataOptions(high_resolution_filter=False)
    for rel in ("talk.mp4", "silent.mp4"):
        assert stages_models.faces(resampled / rel, rel, out, options, models).outputs == [rel]
    return out


def test_check_keeps_playable_files_and_says_why_it_drops_others(raw):
    outcomes = {rel: stages_media.check(raw / rel, rel, None, None, None)
                for rel in ("talk.mp4", "corrupt.mp4", "noaudio.mp4", "sub/talk_30fps.mov")}  # fmt: skip
    assert outcomes["talk.mp4"].outputs == ["talk.mp4"] and outcomes["talk.mp4"].metrics["frames"] == CUT
    assert outcomes["sub/talk_30fps.mov"].outputs == ["sub/talk_30fps.mov"]
    assert outcomes["corrupt.mp4"].dropped == stages_media.DROP_UNREADABLE
    assert outcomes["noaudio.mp4"].dropped == stages_media.DROP_NO_AUDIO
    audio_only = raw.parent / "audio_only.mp4"
    run_ffmpeg("-i", str(ASSETS_DIR / "demo_speech.wav"), "-c:a", "aac", str(audio_only))
    assert stages_media.check(audio_only, "audio_only.mp4", None, None, None).dropped == stages_media.DROP_NO_VIDEO
    truncated = raw.parent / "truncated.mp4"
    data = (raw / "cut.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # the moov atom is at the end: not even probe-able
    assert stages_media.check(truncated, "truncated.mp4", None, None, None).dropped in (
        stages_media.DROP_UNREADABLE, stages_media.DROP_CORRUPT)  # fmt: skip


def test_resample_to_25_fps_and_16_khz_mono(raw, tmp_path):
    copied = stages_media.resample(raw / "talk.mp4", "talk.mp4", tmp_path, None, None)
    converted = stages_media.resample(raw / "sub/talk_30fps.mov", "sub/talk_30fps.mov", tmp_path, None, None)
    assert copied.outputs == ["talk.mp4"] and copied.metrics["video_copied"]
    assert converted.outputs == ["sub/talk_30fps.mov.mp4"] and not converted.metrics["video_copied"]
    for rel in ("talk.mp4", "sub/talk_30fps.mov.mp4"):
        info = media.probe(tmp_path / rel)
        assert info.fps == media.VIDEO_FPS and info.num_frames == CUT
        assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("aac", media.SAMPLE_RATE, 1)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sub", "talk.mp4", "talk_30fps.mov.mp4"]


def test_shots_are_split_where_the_corpus_cuts(resampled, tmp_path):
    assert stages_media.detect_shots(resampled / "cut.mp4") == [(0, CUT), (CUT, 2 * CUT)]
    assert stages_media.detect_shots(resampled / "talk.mp4") == [(0, CUT)]  # no cut: one shot
    outcome = stages_media.shots(resampled / "faceless.mp4", "faceless.mp4", tmp_path, None, None)
    assert outcome.outputs == ["faceless_shot_001.mp4", "faceless_shot_002.mp4"]
    assert outcome.metrics["cuts"] == [CUT]
    frames = [media.probe(tmp_path / r).num_frames for r in outcome.outputs]
    assert frames == [CUT, 63]  # the 2.5 s faceless tail has frames at 0 ... 2.48 s


def test_segments_of_5_s_and_too_short_pieces_dropped(raw, tmp_path):
    long_shot = tmp_path / "long.mp4"  # 11.2 s with keyframes every 5 s, as the shot stage writes
    run_ffmpeg("-stream_loop", "-1", "-i", str(raw / "talk.mp4"), "-t", "11.2", "-c:v", "libx264",
               "-force_key_frames", "expr:gte(t,n_forced*5)", "-c:a", "aac", str(long_shot))  # fmt: skip
    out = tmp_path / "segments"
    outcome = stages_media.segment(long_shot, "long.mp4", out, None, None)
    assert outcome.outputs == ["long_000.mp4", "long_001.mp4"]
    assert outcome.metrics["frames"] == [125, 125, 30]
    assert outcome.pieces_dropped == {decisions.DROP_TOO_SHORT: 1}
    assert sorted(p.name for p in out.iterdir()) == ["long_000.mp4", "long_001.mp4"]  # no temporary left
    short = stages_media.segment(raw / "short.mp4", "short.mp4", out, None, None)
    assert short.dropped == decisions.DROP_TOO_SHORT and short.outputs == []


def test_faces_writes_the_aligned_face_video(aligned, models):
    from latentsync.faces import anchor_points, geometry_for

    info = media.probe(aligned / "talk.mp4")
    assert (info.width, info.height, info.fps, info.num_frames, info.video_codec) == (256, 256, 25, CUT, "h264")
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("aac", media.SAMPLE_RATE, 1)
    # The alignment the inference pipeline uses: brows and nose land on the reference template (210x280 crop
    # squeezed to 256x256).
    frame = media.read_video_frames(aligned / "talk.mp4", max_frames=1)[0]
    faces = models.face_backend.detect(frame)
    assert len(faces) == 1
    points = anchor_points(faces[0].landmarks[None])[0]  # (3, 2)
    geometry = geometry_for(256)
    template = geometry.template * np.array([256 / geometry.crop_width, 256 / geometry.crop_height])
    assert np.abs(points - template).max() < 12  # pixels (the reference adds a small "bias" of a few pixels)


def test_faces_drops_several_small_and_missing_faces(resampled, models, tmp_path):
    lenient, strict = DataOptions(high_resolution_filter=False), DataOptions(resolution=256)
    two = stages_models.faces(resampled / "two_faces.mp4", "two_faces.mp4", tmp_path, lenient, models)
    assert two.dropped == decisions.DROP_SEVERAL_FACES
    small = stages_models.faces(resampled / "talk.mp4", "talk.mp4", tmp_path, strict, models)
    assert small.dropped == decisions.DROP_SMALL_FACE  # the demo face is about 115 px, under 256
    assert 100 < small.metrics["min_face_size"] < 256
    faceless = tmp_path / "grey.mp4"
    media.write_video(faceless, [np.full((8, 64, 64, 3), 128, np.uint8)], audio=np.ones(5120, np.float32) * 0.1)
    assert stages_models.faces(faceless, "grey.mp4", tmp_path, lenient, models).dropped == decisions.DROP_NO_FACE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.mp4"]  # nothing written for dropped clips


@pytest.mark.slow  # loads a full-size network and runs it on CPU
def test_sync_scores_with_the_package_scorer_and_applies_the_decision(aligned, models, tmp_path):
    options = DataOptions(sync_threshold=1e9)  # nothing passes: the scorer runs, the decision drops
    outcome = stages_models.sync(aligned / "talk.mp4", "talk.mp4", tmp_path, options, models)
    offset, confidence = outcome.metrics["offset"], outcome.metrics["confidence"]
    assert -15 <= offset <= 15 and np.isfinite(confidence) and confidence >= 0
    assert outcome.dropped == decisions.sync_decision(offset, confidence, 1e9, 6) == decisions.DROP_LOW_SYNC
    silent = stages_models.sync(aligned / "silent.mp4", "silent.mp4", tmp_path, options, models)
    assert silent.dropped == decisions.DROP_SILENT
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("offset", [3, -2])
def test_audio_shift_moves_the_sound_by_the_offset(aligned, tmp_path, offset):
    click_at = 16_000 // 2  # a click 0.5 s in
    waveform = np.zeros(32_000, np.float32)
    waveform[click_at : click_at + 40] = 0.8
    dest = tmp_path / "shifted.mp4"
    stages_models.write_shifted_audio(aligned / "talk.mp4", dest, waveform, offset)
    shifted = media.load_audio(dest)
    moved = int(np.argmax(np.abs(shifted) > 0.4)) - click_at
    assert abs(moved - offset * decisions.SAMPLES_PER_FRAME) < 64  # AAC smears a click by a few samples
    assert media.probe(dest).num_frames == CUT  # the picture is copied untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shifted.mp4"]


def test_quality_frames_are_first_middle_last(tmp_path):
    frames = np.repeat(np.arange(9, dtype=np.uint8)[:, None, None, None] * 25, 256, axis=1)
    frames = np.repeat(np.repeat(frames, 256, axis=2), 3, axis=3)  # (9, 256, 256, 3), grey level 25 * index
    media.write_video(tmp_path / "ramp.mp4", [frames])
    picked = stages_models.quality_frames(tmp_path / "ramp.mp4")
    assert picked.shape == (3, 256, 256, 3)
    np.testing.assert_allclose(picked.reshape(3, -1).mean(axis=1), [0, 100, 200], atol=3)  # indices 0, 4, 8


@pytest.mark.slow  # loads a full-size network and runs it on CPU
def test_quality_stage_scores_with_hyperiqa(aligned, models, tmp_path):
    lenient, strict = DataOptions(quality_threshold=-1e9), DataOptions(quality_threshold=1e9)
    kept = stages_models.quality(aligned / "talk.mp4", "talk.mp4", tmp_path, lenient, models)
    assert kept.outputs == ["talk.mp4"]
    assert kept.metrics["quality"] == pytest.approx(np.mean(kept.metrics["frame_scores"]), abs=1e-3)
    assert (tmp_path / "talk.mp4").read_bytes() == (aligned / "talk.mp4").read_bytes()
    dropped = stages_models.quality(aligned / "talk.mp4", "x.mp4", tmp_path, strict, models)
    assert dropped.dropped == decisions.DROP_LOW_QUALITY and not (tmp_path / "x.mp4").exists()
