"""End-to-end lip sync with tiny random-weight checkpoints loaded through the real loading code, on real media."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from latentsync import media
from latentsync.errors import InputError
from latentsync.inference.frame_sources import schedule_runs
from latentsync.inference.pipeline import LipSyncOptions
from latentsync.inference.timeline import pingpong_indices

from .conftest import DEMO_AUDIO, DEMO_VIDEO

FAST = LipSyncOptions(steps=2)  # two DDIM steps: the maths is the same, tests stay quick


@pytest.fixture(autouse=True)
def private_face_cache(tmp_path_factory, monkeypatch):
    """Face tracks go to a test folder, never the user's Hugging Face cache."""
    monkeypatch.setenv("LATENTSYNC_CACHE_DIR", str(tmp_path_factory.mktemp("face-tracks")))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def cut_video(dst: Path, frames: int) -> Path:
    ffmpeg("-i", str(DEMO_VIDEO), "-frames:v", str(frames), "-c:v", "libx264", "-crf", "12", str(dst))
    return dst


def speech(dst: Path, seconds: float) -> Path:
    """The demo sentence cut or repeated to ``seconds``."""
    audio = media.load_audio(DEMO_AUDIO)
    samples = round(seconds * media.SAMPLE_RATE)
    media.write_wav(dst, np.resize(audio, samples))
    return dst


def face_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """An independent face box (dlib's HOG detector), grown by half its size on each side: x1, y1, x2, y2."""
    import dlib

    (rect,) = dlib.get_frontal_face_detector()(frame, 0)
    w, h = rect.width(), rect.height()
    return max(rect.left() - w // 2, 0), max(rect.top() - h // 2, 0), rect.right() + w // 2, rect.bottom() + h // 2


def outside(mask_shape, box) -> np.ndarray:
    x1, y1, x2, y2 = box
    keep = np.ones(mask_shape, bool)
    keep[y1:y2, x1:x2] = False
    return keep


# ------------------------------------------------------------------------------------------------ schedule


def test_pingpong_schedule_repeats_turning_frames():
    assert pingpong_indices(4, 11).tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2]
    assert pingpong_indices(1, 3).tolist() == [0, 0, 0]
    assert list(schedule_runs(pingpong_indices(4, 11))) == [(0, 4, 1), (3, 4, -1), (0, 3, 1)]
    assert list(schedule_runs(np.array([5, 5, 5]))) == [(5, 3, 0)]


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_demo_assets_end_to_end(tiny_pipeline, tmp_path):
    out = tmp_path / "synced.mp4"
    stages = []
    result = tiny_pipeline(DEMO_VIDEO, DEMO_AUDIO, out, FAST, progress=lambda s, d, t: stages.append((s, d, t)))
    audio_seconds = len(media.load_audio(DEMO_AUDIO)) / media.SAMPLE_RATE
    expected_frames = int(np.ceil(audio_seconds * 25))
    info = media.probe(out)
    assert result.num_frames == expected_frames == 98 and info.num_frames == expected_frames
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 320, 320)
    assert abs(info.audio_duration - audio_seconds) <= 0.040
    assert result.frames_with_face == expected_frames and not result.looped

    source = media.read_video_frames(DEMO_VIDEO)[:expected_frames].astype(np.int16)
    synced = media.read_video_frames(out).astype(np.int16)
    diff = np.abs(source - synced).mean(-1)  # (n, H, W)
    box = face_box(source[0].astype(np.uint8))
    far = outside(diff.shape[1:], box)
    # Outside the face only codec noise: no worse than re-encoding the source frames unchanged.
    reencoded = media.read_video_frames(media.write_video(tmp_path / "plain.mp4", [source.astype(np.uint8)]))
    codec_noise = np.abs(source - reencoded.astype(np.int16)).mean(-1)
    assert diff[:, far].mean() <= codec_noise[:, far].mean() + 0.1
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    mouth = diff[:, y1 + int(0.6 * h) : y1 + int(0.75 * h), x1 + int(0.4 * w) : x2 - int(0.4 * w)]
    assert mouth.mean() > 20  # the mouth was re-generated (random tiny weights: noise, but changed)
    # progress: every stage reported, lip sync counted batch by batch up to ceil(98 / 16) = 7
    names = [s for s, _, _ in stages]
    # faces first (a video without a face fails before any audio work), then the audio, then the model
    assert names.index("analysing faces") < names.index("audio features") < names.index("lip sync") < names.index("done")
    # only the 98 frames the audio needs are analysed, not all 100 of the video
    assert ("lip sync", 7, 7) in stages and ("analysing faces", 98, 98) in stages


@pytest.mark.slow
def test_same_seed_same_output_and_seed_matters(tiny_pipeline, tmp_path):
    video, audio = cut_video(tmp_path / "v.mp4", 20), speech(tmp_path / "a.wav", 0.5)
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        tiny_pipeline(video, audio, tmp_path / f"{name}.mp4", LipSyncOptions(steps=2, seed=seed))
        runs[name] = media.read_video_frames(tmp_path / f"{name}.mp4")
    assert runs["a"].shape == (13, 320, 320, 3)  # ceil(0.5 s x 25) = 13 frames
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert np.abs(runs["a"].astype(int) - runs["c"]).mean() > 0.5


@pytest.mark.slow
def test_audio_longer_than_video_plays_it_back_and_forth(tiny_pipeline, tmp_path):
    video, audio = cut_video(tmp_path / "v.mp4", 12), speech(tmp_path / "a.wav", 1.0)
    out = tmp_path / "o.mp4"
    result = tiny_pipeline(video, audio, out, FAST)
    assert result.looped and result.source_frames == 12 and result.num_frames == 25
    source = media.read_video_frames(video).astype(np.int16)
    synced = media.read_video_frames(out).astype(np.int16)
    assert len(synced) == 25
    far = outside(source.shape[1:3], face_box(source[0].astype(np.uint8)))
    for j, i in enumerate(pingpong_indices(12, 25)):  # frame j shows source frame i outside the face
        errors = [np.abs(synced[j][far] - source[k][far]).mean() for k in range(12)]
        assert int(np.argmin(errors)) == i or errors[i] - min(errors) < 0.2


@pytest.mark.slow
def test_audio_shorter_than_video_cuts_it(tiny_pipeline, tmp_path):
    video, audio = cut_video(tmp_path / "v.mp4", 40), speech(tmp_path / "a.wav", 0.61)
    result = tiny_pipeline(video, audio, tmp_path / "o.mp4", FAST)
    assert not result.looped and result.num_frames == 16  # ceil(0.61 x 25)
    assert media.probe(tmp_path / "o.mp4").num_frames == 16


@pytest.mark.slow
def test_frames_without_a_face_pass_through_untouched(tiny_pipeline, tmp_path):
    frames = media.read_video_frames(DEMO_VIDEO)[:30].copy()
    frames[10:20] = 128  # ten frames with no face: longer than the interpolation gap
    video = media.write_video(tmp_path / "gap.mp4", [frames])
    out = tmp_path / "o.mp4"
    result = tiny_pipeline(video, speech(tmp_path / "a.wav", 1.2), out, FAST)
    assert result.num_frames == 30 and result.frames_with_face == 20
    source = media.read_video_frames(video).astype(np.int16)
    synced = media.read_video_frames(out).astype(np.int16)
    assert np.abs(source[11:19] - synced[11:19]).max() <= 3  # encoded twice, otherwise identical
    assert np.abs(source[:10] - synced[:10]).max() > 50  # the face frames did change


def test_video_without_a_face_is_a_clear_error_and_leaves_nothing(tiny_pipeline, tmp_path, monkeypatch):
    from skimage import data

    cat = np.repeat(data.chelsea()[None, :296, :448], 10, axis=0)
    video = media.write_video(tmp_path / "cat.mp4", [cat])
    workdir = tmp_path / "tmp"
    workdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(workdir))
    out_dir = tmp_path / "out"
    with pytest.raises(InputError, match="(?i)no face"):
        tiny_pipeline(video, speech(tmp_path / "a.wav", 0.4), out_dir / "o.mp4", FAST)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
    assert list(workdir.iterdir()) == []


def test_bad_inputs_are_named(tiny_pipeline, tmp_path):
    video = cut_video(tmp_path / "v.mp4", 5)
    with pytest.raises(InputError, match="no audio track"):
        tiny_pipeline(video, video, tmp_path / "o.mp4", FAST)
    with pytest.raises(InputError, match="steps must be"):
        tiny_pipeline(video, DEMO_AUDIO, tmp_path / "o.mp4", LipSyncOptions(steps=0))
    with pytest.raises(InputError, match="guidance_scale"):
        tiny_pipeline(video, DEMO_AUDIO, tmp_path / "o.mp4", LipSyncOptions(guidance_scale=0.5))
    with pytest.raises(InputError, match="no video stream"):
        tiny_pipeline(DEMO_AUDIO, DEMO_AUDIO, tmp_path / "o.mp4", FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


@pytest.mark.slow
def test_sync_scores_before_and_after(tiny_checkpoints, tmp_path):
    from latentsync import load_pipeline
    from latentsync.faces import load_landmark_backend
    from latentsync.sync.cli import score_file

    pipeline = load_pipeline("1.5", device="cpu", dtype="float32", checkpoints_dir=tiny_checkpoints, sync_scores=True)
    video, audio = cut_video(tmp_path / "v.mp4", 20), speech(tmp_path / "a.wav", 0.8)
    result = pipeline(video, audio, tmp_path / "o.mp4", LipSyncOptions(steps=1, guidance_scale=1.0, score_sync=True))
    assert result.sync_before is not None and result.sync_after is not None
    assert np.isfinite([result.sync_before.confidence, result.sync_after.min_distance]).all()
    assert "Sync-C before" in result.summary()
    # "before" is the input video as the pipeline plays it, scored as the standalone tool scores it
    standalone = score_file(video, audio, pipeline.sync_scorer, load_landmark_backend("dlib"))
    np.testing.assert_allclose(result.sync_before.distances, standalone.distances, rtol=1e-5)
    # score_input=False: the output's scores only (the same render, so the same numbers), no pass over the input
    after_only = pipeline(video, audio, tmp_path / "o2.mp4",
                          LipSyncOptions(steps=1, guidance_scale=1.0, score_sync=True, score_input=False))
    assert after_only.sync_before is None
    np.testing.assert_array_equal(after_only.sync_after.distances, result.sync_after.distances)
    assert f"Sync-C {result.sync_after.confidence:.2f} (Sync-D" in after_only.summary()
    assert "before" not in after_only.summary()


def test_sync_scores_need_the_syncnet(tiny_pipeline, tmp_path):
    with pytest.raises(ValueError, match="sync_scores=True"):
        tiny_pipeline(DEMO_VIDEO, DEMO_AUDIO, tmp_path / "o.mp4", LipSyncOptions(score_sync=True))


def test_ddim_config_gives_the_reference_timesteps():
    from diffusers import DDIMScheduler

    from latentsync.inference.pipeline import DDIM_CONFIG

    scheduler = DDIMScheduler.from_config(DDIM_CONFIG)
    scheduler.set_timesteps(20)
    assert scheduler.timesteps.tolist() == list(range(951, 0, -50))
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist()[:3] == [981, 961, 941] and scheduler.timesteps.tolist()[-1] == 1
    assert float(scheduler.final_alpha_cumprod) == pytest.approx(0.99915, abs=1e-6)
    assert float(scheduler.alphas_cumprod[999]) == pytest.approx(0.00466, abs=1e-5)


@pytest.mark.slow
def test_video_whose_soundtrack_outlasts_the_picture_still_loops_exactly(tiny_pipeline, tmp_path):
    # 12 frames of picture in a file whose own audio track lasts 3 s: the container says 3 s.
    video = tmp_path / "short_picture.mp4"
    ffmpeg("-i", str(cut_video(tmp_path / "v.mp4", 12)), "-i", str(DEMO_AUDIO), "-map", "0:v", "-map", "1:a",
           "-t", "3", "-c:v", "copy", "-c:a", "aac", str(video))  # fmt: skip
    info = media.probe(video)
    assert info.duration > 2.5 and info.frames_at_model_fps == 12
    result = tiny_pipeline(video, speech(tmp_path / "a.wav", 0.8), tmp_path / "o.mp4", LipSyncOptions(steps=1))
    assert result.looped and result.source_frames == 12 and result.num_frames == 20


@pytest.mark.slow
def test_odd_frame_size_loops_at_the_size_it_has_without_looping(tiny_pipeline, tmp_path):
    # 321x241 in RGB H.264: the 25 fps copy that looping reads is yuv420p, i.e. padded to 322x242.
    video = tmp_path / "odd.mkv"
    ffmpeg("-i", str(DEMO_VIDEO), "-vf", "fps=30,scale=321:241", "-frames:v", "15", "-c:v", "libx264rgb", str(video))
    assert (media.probe(video).width, media.probe(video).height) == (321, 241)
    looped = tiny_pipeline(video, speech(tmp_path / "long.wav", 1.5), tmp_path / "looped.mp4", FAST)
    straight = tiny_pipeline(video, speech(tmp_path / "short.wav", 0.3), tmp_path / "straight.mp4", FAST)
    assert looped.looped and not straight.looped and looped.num_frames == 38
    sizes = {(info.width, info.height) for info in map(media.probe, [looped.output, straight.output])}
    assert len(sizes) == 1 and sizes <= {(321, 241), (322, 242)}  # the same either way (the writer may pad)
    # Every looped frame shows its scheduled source frame outside the face, unshifted by the copy's padding.
    source = media.read_video_frames(video).astype(np.int16)
    synced = media.read_video_frames(looped.output)[:, :241, :321].astype(np.int16)
    far = outside(source.shape[1:3], face_box(source[0].astype(np.uint8)))
    for j, i in enumerate(pingpong_indices(len(source), 38)):
        errors = [np.abs(synced[j][far] - frame[far]).mean() for frame in source]
        assert int(np.argmin(errors)) == i or errors[i] - min(errors) < 0.2
        assert errors[i] < 4


def test_output_that_cannot_be_written_is_refused_before_any_work(tiny_pipeline, tmp_path, monkeypatch):
    video, audio = cut_video(tmp_path / "v.mp4", 5), speech(tmp_path / "a.wav", 0.4)
    calls = []
    monkeypatch.setattr(tiny_pipeline.audio_encoder, "features", lambda *a: calls.append(a))  # would be the first work
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(InputError, match="is a directory"):
        tiny_pipeline(video, audio, folder, FAST)
    with pytest.raises(InputError, match="is also an input"):
        tiny_pipeline(video, audio, tmp_path / "." / "a.wav", FAST)
    with pytest.raises(InputError, match="is a file, not a folder"):
        tiny_pipeline(video, audio, tmp_path / "a.wav" / "o.mp4", FAST)
    assert calls == [] and list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "out", "v.mp4"]
