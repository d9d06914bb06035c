"""Issue 15's options end to end with the tiny pipeline: length modes, photos, the speaker's face, native frame
rate, quality and audio, and the face-track cache."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest

from latentsync import media
from latentsync.errors import InputError
from latentsync.inference.pipeline import LipSyncOptions, speaker_point

from .conftest import DEMO_AUDIO, DEMO_VIDEO

ONE_STEP = LipSyncOptions(steps=1, guidance_scale=1.0)  # the cheapest run: the maths of one step is enough here


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own face-track cache folder (never the user's Hugging Face cache)."""
    monkeypatch.setenv("LATENTSYNC_CACHE_DIR", str(tmp_path / "face-tracks"))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def cut_video(dst: Path, frames: int, *extra: str) -> Path:
    ffmpeg("-i", str(DEMO_VIDEO), *extra, "-frames:v", str(frames), "-c:v", "libx264", "-crf", "12", str(dst))
    return dst


def speech(dst: Path, seconds: float, offset: float = 0.0) -> Path:
    audio = media.load_audio(DEMO_AUDIO)
    start = round(offset * media.SAMPLE_RATE)
    media.write_wav(dst, np.resize(audio[start:], round(seconds * media.SAMPLE_RATE)))
    return dst


def face_box(frame: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Independent face boxes (dlib's HOG detector), left to right: x1, y1, x2, y2."""
    import dlib

    rects = dlib.get_frontal_face_detector()(frame, 0)
    return sorted((r.left(), r.top(), r.right(), r.bottom()) for r in rects)


def reencoded(frames: np.ndarray, tmp_path: Path, fps=25) -> np.ndarray:
    """``frames`` through the same single encode as the output (CRF 18): the yardstick for "unchanged"."""
    path = media.write_video(tmp_path / "yardstick.mp4", [frames.astype(np.uint8)], fps=fps)
    return np.concatenate(list(media.iter_video_frames(path, fps=fps))).astype(np.int16)


def mouth(box, frames):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return frames[:, y1 + int(0.7 * h) : y2 + int(0.1 * h), x1 + int(0.25 * w) : x2 - int(0.25 * w)]


# ------------------------------------------------------------------------------------------------ checks


def test_new_options_are_checked_with_named_errors():
    for bad, match in [
        (dict(speaker="left"), "speaker must be 'largest' or a point 'x,y'.*'left'"),
        (dict(speaker="-3,4"), "speaker.*>= 0.*'-3,4'"),
        (dict(length_mode="bounce"), "length_mode must be one of pingpong, loop, freeze, video, got 'bounce'"),
        (dict(crf=60), "crf must be an integer from 0.*51, got 60"),
        (dict(native_fps="yes"), "native_fps must be true or false"),
    ]:
        with pytest.raises(InputError, match=match):
            LipSyncOptions(**bad).check()
    LipSyncOptions(speaker="0.25,0.5", length_mode="freeze", native_fps=True, crf=0, face_cache=False).check()


def test_speaker_point_in_pixels_or_fractions():
    assert speaker_point("largest", 640, 320) is None
    assert speaker_point("100, 50", 640, 320) == (100.0, 50.0)
    assert speaker_point("0.5,1", 641, 321) == (320.0, 320.0)  # fractions of the last pixel's position
    with pytest.raises(InputError, match=r"\(700, 50\) lies outside the 640x320 frame"):
        speaker_point("700,50", 640, 320)


# ------------------------------------------------------------------------------------------------ length modes


@pytest.mark.slow
def test_length_modes(tiny_pipeline, tmp_path):
    video = cut_video(tmp_path / "v.mp4", 6)
    long_audio = speech(tmp_path / "long.wav", 0.4)  # 10 frames for a 6-frame video
    source = media.read_video_frames(video).astype(np.int16)
    (box,) = face_box(source[0].astype(np.uint8))
    far = np.ones(source.shape[1:3], bool)
    far[max(box[1] - 60, 0) :, max(box[0] - 60, 0) : box[2] + 60] = False  # above and beside the face: untouched
    far[:20] = True
    for mode, expected in (("loop", [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]), ("freeze", [0, 1, 2, 3, 4, 5, 5, 5, 5, 5])):
        result = tiny_pipeline(video, long_audio, tmp_path / f"{mode}.mp4", dataclasses.replace(ONE_STEP, length_mode=mode))
        assert result.looped and result.num_frames == 10 and result.length_mode == mode
        assert {"loop": "looped from its start", "freeze": "held on its last frame"}[mode] in result.summary()
        synced = media.read_video_frames(result.output).astype(np.int16)
        shown = [int(np.argmin([np.abs(s[far] - f[far]).mean() for f in source])) for s in synced]
        # the demo face barely moves: frames are told apart by their codec noise; allow a neighbour's match
        assert np.abs(np.array(shown) - expected).max() <= 1
    # output follows the video: a short speech is padded with silence, a long one cut
    short = tiny_pipeline(video, speech(tmp_path / "short.wav", 0.1), tmp_path / "pad.mp4",
                          dataclasses.replace(ONE_STEP, length_mode="video"))  # fmt: skip
    info = media.probe(short.output)
    assert short.num_frames == 6 and info.num_frames == 6 and "padded with 0.14 s of silence" in short.summary()
    assert abs(info.audio_duration - 0.24) < 0.03
    cut = tiny_pipeline(video, long_audio, tmp_path / "cut.mp4", dataclasses.replace(ONE_STEP, length_mode="video"))
    info = media.probe(cut.output)
    assert cut.num_frames == 6 and not cut.looped and "audio cut to the video's 0.24 s" in cut.summary()
    assert abs(info.audio_duration - 0.24) < 0.03


def test_silent_speech_is_named_in_the_summary(tiny_pipeline, tmp_path):
    video = cut_video(tmp_path / "v.mp4", 6)
    media.write_wav(tmp_path / "silence.wav", np.zeros(round(0.24 * media.SAMPLE_RATE), np.float32))
    quiet = tiny_pipeline(video, tmp_path / "silence.wav", tmp_path / "quiet.mp4", ONE_STEP)
    assert quiet.silent_audio and quiet.num_frames == 6 and media.probe(quiet.output).num_frames == 6
    assert "the audio is silent (no sample reaches -50 dBFS): there is no speech for the mouth to follow" in quiet.summary()
    spoken = tiny_pipeline(video, speech(tmp_path / "speech.wav", 0.24), tmp_path / "spoken.mp4", ONE_STEP)
    assert not spoken.silent_audio and "silent" not in spoken.summary()


# ------------------------------------------------------------------------------------------------ photos


@pytest.mark.slow
def test_a_photo_becomes_a_still_video_as_long_as_the_audio(tiny_pipeline, tmp_path):
    frame = media.read_video_frames(DEMO_VIDEO, max_frames=1)[0]
    photo = tmp_path / "face.png"
    import cv2

    cv2.imwrite(str(photo), frame[:, :, ::-1])
    result = tiny_pipeline(photo, speech(tmp_path / "a.wav", 0.3), tmp_path / "o.mp4", ONE_STEP)
    assert result.photo and result.num_frames == 8 and result.frames_with_face == 8 and result.source_frames == 1
    assert "photo held for the whole speech" in result.summary()
    synced = media.read_video_frames(result.output).astype(np.int16)
    (box,) = face_box(frame)
    plain = reencoded(np.repeat(frame[None], 8, axis=0), tmp_path)
    assert np.abs(synced[:, :15] - plain[:, :15]).mean() < 0.5  # the top rows: the photo (through one encode)
    assert np.abs(mouth(box, synced) - mouth(box, frame[None])).mean() > 5  # the mouth was generated
    # the same photo as JPEG and WebP is accepted too
    for suffix in (".jpg", ".webp"):
        other = tmp_path / f"face{suffix}"
        cv2.imwrite(str(other), frame[:, :, ::-1])
        assert media.probe(other).still_image


def test_bad_photos_and_photo_mode_mismatch_are_named(tiny_pipeline, tmp_path):
    fake = tmp_path / "face.png"
    fake.write_bytes(b"this is not a picture at all" * 20)
    with pytest.raises(InputError, match="face.png is not a (valid image|readable video)"):
        tiny_pipeline(fake, DEMO_AUDIO, tmp_path / "o.mp4", ONE_STEP)
    import cv2

    photo = tmp_path / "real.png"
    cv2.imwrite(str(photo), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="length_mode 'video'.*real.png is a photo"):
        tiny_pipeline(photo, DEMO_AUDIO, tmp_path / "o.mp4", dataclasses.replace(ONE_STEP, length_mode="video"))


# ------------------------------------------------------------------------------------------------ speaker


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """The demo face and its mirror image side by side (640x320), 6 frames."""
    path = tmp_path_factory.mktemp("two") / "two.mp4"
    ffmpeg("-i", str(DEMO_VIDEO), "-filter_complex", "[0:v]split[a][b];[b]hflip[c];[a][c]hstack", "-frames:v", "6",
           "-c:v", "libx264", "-crf", "12", str(path))  # fmt: skip
    return path


@pytest.mark.slow
def test_only_the_chosen_speaker_changes(tiny_pipeline, two_faces, tmp_path):
    source = media.read_video_frames(two_faces).astype(np.int16)
    left, right = face_box(source[0].astype(np.uint8))
    audio = speech(tmp_path / "a.wav", 0.24)
    plain = reencoded(source, tmp_path)
    changed = {}
    for name, point in (("left", f"{(left[0] + left[2]) // 2},{(left[1] + left[3]) // 2}"), ("right", "0.75,0.5")):
        result = tiny_pipeline(two_faces, audio, tmp_path / f"{name}.mp4", dataclasses.replace(ONE_STEP, speaker=point))
        synced = media.read_video_frames(result.output).astype(np.int16)
        changed[name] = [np.abs(mouth(box, synced) - mouth(box, plain)).mean() for box in (left, right)]
    # the chosen face's mouth is re-generated; the other stays as decoded (one more encode's noise)
    # (the encode spends its bits differently when one face is re-drawn: a little more noise than the yardstick)
    assert changed["left"][0] > 10 * changed["left"][1] and changed["left"][1] < 3.0
    assert changed["right"][1] > 10 * changed["right"][0] and changed["right"][0] < 3.0


def test_speaker_point_on_no_face_is_named(tiny_pipeline, two_faces, tmp_path):
    with pytest.raises(InputError, match=r"speaker: the point \(320, 5\) is on no face in frame 0"):
        tiny_pipeline(two_faces, DEMO_AUDIO, tmp_path / "o.mp4", dataclasses.replace(ONE_STEP, speaker="320,5"))
    with pytest.raises(InputError, match=r"speaker: the point \(900, 5\) lies outside the 640x320 frame"):
        tiny_pipeline(two_faces, DEMO_AUDIO, tmp_path / "o.mp4", dataclasses.replace(ONE_STEP, speaker="900,5"))


# ------------------------------------------------------------------------------------------------ native fps


@pytest.mark.slow
def test_native_frame_rate_keeps_every_frame_and_the_audio_format(tiny_pipeline, tmp_path):
    video = cut_video(tmp_path / "v30.mp4", 12, "-vf", "fps=30")
    audio = tmp_path / "stereo.m4a"  # 44.1 kHz stereo: kept as it is in the output (not the model's 16 kHz mono)
    ffmpeg("-i", str(speech(tmp_path / "a.wav", 0.3)), "-ar", "44100", "-ac", "2", "-c:a", "aac", str(audio))
    expected = media.frames_for_duration(len(media.load_audio(audio)) / media.SAMPLE_RATE, 30)  # AAC pads a little
    options = dataclasses.replace(ONE_STEP, native_fps=True)
    result = tiny_pipeline(video, audio, tmp_path / "o.mp4", options)
    info = media.probe(result.output)
    assert 9 <= expected <= 12 and not result.looped
    assert result.fps == 30 and result.num_frames == expected == info.num_frames and info.frame_rate == "30/1"
    assert (info.audio_sample_rate, info.audio_channels) == (44100, 2)
    assert "at 30 fps" in result.summary()
    source = np.concatenate(list(media.iter_video_frames(video, fps=30)))[:expected].astype(np.int16)
    synced = np.concatenate(list(media.iter_video_frames(result.output, fps=30))).astype(np.int16)
    assert len(synced) == expected
    (box,) = face_box(source[0].astype(np.uint8))
    plain = reencoded(source, tmp_path, fps=30)
    assert np.abs(synced[:, :15] - plain[:, :15]).mean() < 1.0  # every native frame's own pixels away from the face
    assert np.abs(mouth(box, synced) - mouth(box, source)).mean() > 5
    # the quality setting: a higher CRF gives a smaller file
    worse = tiny_pipeline(video, audio, tmp_path / "worse.mp4", dataclasses.replace(options, crf=40))
    assert worse.output.stat().st_size < result.output.stat().st_size


# ------------------------------------------------------------------------------------------------ the cache


class CountingBackend:
    """The real landmark backend, counting its calls (instrumentation, not a stand-in)."""

    def __init__(self, backend):
        self.backend, self.calls = backend, 0

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def detect(self, frame):
        self.calls += 1
        return self.backend.detect(frame)


@pytest.mark.slow
def test_a_second_run_on_the_same_video_skips_face_analysis(tiny_pipeline, tmp_path):
    pipeline = copy.copy(tiny_pipeline)
    pipeline.face_backend = counting = CountingBackend(tiny_pipeline.face_backend)
    video = cut_video(tmp_path / "v.mp4", 8)
    first = pipeline(video, speech(tmp_path / "en.wav", 0.32), tmp_path / "en.mp4", ONE_STEP)
    assert counting.calls >= 8 and not first.face_track_cached
    counting.calls = 0
    renamed = tmp_path / "same-video-renamed.mp4"
    renamed.write_bytes(video.read_bytes())
    german = speech(tmp_path / "de.wav", 0.32, offset=1.0)
    second = pipeline(renamed, german, tmp_path / "de.mp4", ONE_STEP)
    assert counting.calls == 0 and second.face_track_cached and "face track reused" in second.summary()
    uncached = pipeline(video, german, tmp_path / "de-uncached.mp4", dataclasses.replace(ONE_STEP, face_cache=False))
    assert counting.calls > 0
    assert second.output.read_bytes() == uncached.output.read_bytes()


# ------------------------------------------------------------------------------------------------ speed wiring


@pytest.mark.slow
def test_overlap_is_byte_identical_and_step_caching_is_wired(tiny_pipeline, tmp_path):
    video, audio = cut_video(tmp_path / "v.mp4", 8), speech(tmp_path / "a.wav", 0.68)  # 17 frames: two windows
    options = LipSyncOptions(steps=3, guidance_scale=1.0)
    assert options.cache_interval == 3 and options.overlap  # the defaults: the reference app's step caching
    runs = {}
    for name, changes in (("overlap", {}), ("sequential", {"overlap": False}),
                          ("full_steps", {"overlap": False, "cache_interval": 1})):  # fmt: skip
        runs[name] = tiny_pipeline(video, audio, tmp_path / f"{name}.mp4", dataclasses.replace(options, **changes))
    assert runs["overlap"].output.read_bytes() == runs["sequential"].output.read_bytes()
    for run in runs.values():  # busy seconds per stage, for the speed benchmark
        assert {"prepare", "denoise", "paste", "encode"} <= set(run.stage_busy) and run.stage_busy["denoise"] > 0
    cached, full = (media.read_video_frames(runs[n].output).astype(np.int16) for n in ("sequential", "full_steps"))
    assert np.abs(cached - full).max() > 0  # caching changes the result a little (its steps skip deep layers)
    with pytest.raises(InputError, match="cache_interval must be an integer from 1"):
        LipSyncOptions(cache_interval=0).check()
    with pytest.raises(InputError, match="overlap must be true or false"):
        LipSyncOptions(overlap="yes").check()


def fails_cleanly(pipeline, tmp_path, message: str) -> None:
    """Run ``pipeline`` on a 25-frame clip (two windows), expect the injected RuntimeError ``message``, and check
    that it left no output, no temporary file and no overlap thread behind."""
    import threading

    video, audio = cut_video(tmp_path / "v.mp4", 8), speech(tmp_path / "a.wav", 1.0)
    out_dir = tmp_path / "out"
    with pytest.raises(RuntimeError, match=message):
        pipeline(video, audio, out_dir / "o.mp4", ONE_STEP)
    assert not (out_dir / "o.mp4").exists() and list(out_dir.glob("*")) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("overlap-")]


@pytest.mark.slow
def test_an_error_on_the_worker_thread_propagates_and_leaves_nothing(tiny_pipeline, tmp_path):
    import threading

    pipeline = copy.copy(tiny_pipeline)
    calls = []

    def failing_prepare(frames, matrices, generator, vae_batch=None):  # fault injection on the worker's 2nd window
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            raise RuntimeError("injected failure while preparing a window")
        return tiny_pipeline._prepare_faces(frames, matrices, generator, vae_batch)

    pipeline._prepare_faces = failing_prepare
    fails_cleanly(pipeline, tmp_path, "injected failure while preparing")
    assert calls[0].startswith("overlap-prepare")


@pytest.mark.slow
def test_low_memory_runs_the_guidance_halves_and_the_vae_frames_one_by_one(tiny_pipeline, tmp_path):
    """With low_memory the UNet only ever sees one guidance half and the VAE one frame per call, and the video is
    the default path's up to float rounding. (The pieces equal the batched calls within 1e-5:
    tests/test_models_low_memory.py, tests/test_vae.py; the tiny random networks amplify that rounding to a few
    grey levels at most on some mouth pixels, so the video is compared on average.)"""
    video, audio = cut_video(tmp_path / "v.mp4", 8), speech(tmp_path / "a.wav", 0.68)  # 17 frames: two windows
    options = LipSyncOptions(steps=3, guidance_scale=1.5)  # guided, with step caching (interval 3)
    seen: dict[str, list[int]] = {"unet": [], "vae_encoder": [], "vae_decoder": []}
    hooks = [tiny_pipeline.unet.conv_in.register_forward_hook(lambda m, i, o: seen["unet"].append(i[0].shape[0])),
             tiny_pipeline.vae.model.encoder.register_forward_hook(
                 lambda m, i, o: seen["vae_encoder"].append(i[0].shape[0])),
             tiny_pipeline.vae.model.decoder.register_forward_hook(
                 lambda m, i, o: seen["vae_decoder"].append(i[0].shape[0]))]  # fmt: skip
    try:
        plain = tiny_pipeline(video, audio, tmp_path / "plain.mp4", options)
        assert max(seen["unet"]) == 2 and max(seen["vae_encoder"]) > 1  # default: guidance batch, VAE chunks
        for calls in seen.values():
            calls.clear()
        low = tiny_pipeline(video, audio, tmp_path / "low.mp4", dataclasses.replace(options, low_memory=True))
        assert seen["unet"] and set(seen["unet"]) == {1}
        assert set(seen["vae_encoder"]) == {1} and set(seen["vae_decoder"]) == {1}
    finally:
        for hook in hooks:
            hook.remove()
    a, b = (media.read_video_frames(r.output).astype(np.int16) for r in (plain, low))
    assert a.shape == b.shape == (17, *a.shape[1:])
    assert np.abs(a - b).mean() < 1.0  # grey levels, over whole frames
    with pytest.raises(InputError, match="low_memory must be true or false"):
        LipSyncOptions(low_memory="yes").check()


def test_compile_option_wraps_the_unet(tiny_checkpoints):
    """load_pipeline(compile=True) hands the pipeline a torch.compile wrapper (nothing compiles before a call;
    tests/test_compile.py checks the compiled maths)."""
    from latentsync import load_pipeline
    from latentsync.inference.compile import inductor_problem, is_compiled

    if inductor_problem("cpu") is not None:
        with pytest.raises(InputError, match="compile: torch.compile cannot run"):
            load_pipeline("1.5", device="cpu", dtype="float32", checkpoints_dir=tiny_checkpoints, compile=True)
        return
    pipeline = load_pipeline("1.5", device="cpu", dtype="float32", checkpoints_dir=tiny_checkpoints, compile=True)
    assert is_compiled(pipeline.unet) and pipeline.unet.config.cross_attention_dim == 16


@pytest.mark.slow
def test_an_error_while_pasting_on_a_drain_thread_propagates_and_leaves_nothing(tiny_pipeline, tmp_path, monkeypatch):
    import threading

    import latentsync.inference.pipeline as pipeline_module

    calls = []
    real_paste = pipeline_module._paste_window

    def failing_paste(window):  # fault injection on the paste-back thread's second window
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            raise RuntimeError("injected failure while pasting a window")
        return real_paste(window)

    monkeypatch.setattr(pipeline_module, "_paste_window", failing_paste)
    fails_cleanly(tiny_pipeline, tmp_path, "injected failure while pasting")
    assert calls[0].startswith("overlap-paste")
