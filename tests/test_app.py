"""The Gradio Space (app.py, latentsync/app_support/).

Fast: settings, input checks, the ZeroGPU estimate, the model cache, progress and text, the page's build.
Served: the ``/lipsync`` endpoint through ``gradio_client`` against a smoke-mode server on 127.0.0.1 in
this process (the calls that run the tiny models are marked slow).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # set before gradio is imported: no calls home

import numpy as np
import pytest

import app
from latentsync import media
from latentsync.app_support import (
    AppSettings,
    LipSyncJob,
    PipelineCache,
    StageProgress,
    check_inputs,
    describe_result,
    gpu_seconds,
    make_options,
)
from latentsync.errors import CheckpointError, InputError
from latentsync.inference.pipeline import LipSyncOptions, LipSyncResult
from latentsync.sync import SyncScore
from latentsync.inference.timeline import LENGTH_MODES

from .conftest import DEMO_AUDIO, DEMO_VIDEO, REPO_ROOT

TEST_MAX_SECONDS = 1.0  # the served test app accepts at most 1 s, so "too long" is cheap to provoke
SHORT_FRAMES = 12  # the demo video's first 12 frames
SHORT_SECONDS = 0.3  # of speech: the output has ceil(0.3 x 25) = 8 frames, one VAE batch, one UNet call
FAST = {"version": "1.5", "steps": 1, "guidance_scale": 1.0, "seed": 7}  # one step, guidance off
PARAMETERS = ["video", "audio", "version", "steps", "guidance_scale", "seed", "randomize_seed", "score_sync",
              "speaker", "length_mode", "native_fps", "crf", "photo", "faster",
              "seamless_audio_windows", "restore", "restore_strength", "speakers"]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def private_face_cache(tmp_path_factory):
    """Face tracks go to a test folder, never the user's Hugging Face cache (the served app reads os.environ)."""
    old = os.environ.get("LATENTSYNC_CACHE_DIR")
    os.environ["LATENTSYNC_CACHE_DIR"] = str(tmp_path_factory.mktemp("face-tracks"))
    yield
    if old is None:
        del os.environ["LATENTSYNC_CACHE_DIR"]
    else:
        os.environ["LATENTSYNC_CACHE_DIR"] = old


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def speech(path: Path, seconds: float) -> Path:
    """The demo sentence cut or repeated to exactly ``seconds``."""
    media.write_wav(path, np.resize(media.load_audio(DEMO_AUDIO), round(seconds * media.SAMPLE_RATE)))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("app-inputs")
    ffmpeg("-i", str(DEMO_VIDEO), "-frames:v", str(SHORT_FRAMES), "-an", str(d / "face.mp4"))
    (d / "notes.mp4").write_bytes(b"not a video")
    (d / "fake.png").write_bytes(b"not a picture" * 30)
    ffmpeg("-i", str(DEMO_VIDEO), "-frames:v", "1", "-f", "image2", "-c:v", "png", str(d / "photo.mp4"))
    return {
        "video": d / "face.mp4",
        "audio": speech(d / "speech.wav", SHORT_SECONDS),
        "grey": media.write_video(d / "grey.mp4", [np.full((SHORT_FRAMES, 64, 64, 3), 128, np.uint8)]),
        "long_audio": speech(d / "long.wav", 1.5),
        "not_media": d / "notes.mp4",
        "still": d / "photo.mp4",
        "fake_photo": d / "fake.png",
    }


# ------------------------------------------------------------------------------------------ fast: helpers


def test_settings_from_env():
    assert AppSettings.from_env({}) == AppSettings(max_seconds=60.0, smoke=False)
    assert AppSettings.from_env({"MAX_SECONDS": "2.5", "LATENTSYNC_SMOKE": "1"}) == AppSettings(2.5, True)
    assert AppSettings.from_env({"MAX_SECONDS": "0"}).max_seconds is None  # 0 = no limit
    assert AppSettings.from_env({"LATENTSYNC_SMOKE": "0"}, smoke=True).smoke  # the --smoke flag
    for bad in ("ten", "-1", "nan"):
        with pytest.raises(ValueError, match="MAX_SECONDS must be a number of seconds >= 0"):
            AppSettings.from_env({"MAX_SECONDS": bad})


def test_gpu_estimate_follows_length_steps_and_version():
    cfg20 = LipSyncOptions(steps=20, guidance_scale=1.5, cache_interval=1)  # every step in full
    # 10 s = 250 frames: UNet 250 x 20 steps x 2 (guidance) x 2 ms = 20 s, VAE 1 s, faces 500 x 15 ms
    # = 7.5 s; 15 s start-up + 1.5 x 28.5 s = 57.75 -> 58
    assert gpu_seconds("1.5", 10.0, 10.0, cfg20) == 58
    assert gpu_seconds("1.6", 10.0, 10.0, cfg20) == 153  # 15 + 1.5 x (80 + 4 + 7.5) = 152.25
    no_guidance = LipSyncOptions(steps=20, guidance_scale=1.0, cache_interval=1)
    assert gpu_seconds("1.5", 10.0, 10.0, no_guidance) == 43  # 15 + 1.5 x (10 + 1 + 7.5)
    assert gpu_seconds("1.5", 10.0, 10.0, dataclasses.replace(cfg20, score_sync=True)) == 66  # + 1.5 x 5
    assert gpu_seconds("1.5", 0.3, 0.3, cfg20) == 30  # never below the floor
    assert gpu_seconds("1.6", 60.0, 60.0, LipSyncOptions(steps=50)) == 300  # nor above what ZeroGPU grants
    job = LipSyncJob("v.mp4", "a.wav", "o.mp4", "1.5", cfg20, video_seconds=10.0, audio_seconds=10.0)
    assert app.gpu_duration(job, None) == 58  # @spaces.GPU(duration=...) gets the wrapper's own arguments
    # step caching (the default, interval 3): 7 full steps of 20 and 13 at a tenth of the cost -> UNet 8.3 / 20
    assert gpu_seconds("1.5", 10.0, 10.0, dataclasses.replace(cfg20, cache_interval=3)) == 41  # 15 + 1.5 x 16.8 = 40.2
    # native frame rate: faces on every native frame: 15 + 1.5 x (20 + 1 + 1200 x 15 ms) = 73.5 (UNet unchanged)
    assert gpu_seconds("1.5", 10.0, 10.0, dataclasses.replace(cfg20, native_fps=True), native_fps=60) == 74


def test_check_inputs_accepts_and_measures(inputs):
    video_seconds, audio_seconds = check_inputs(str(inputs["video"]), str(inputs["audio"]), TEST_MAX_SECONDS)
    assert video_seconds == pytest.approx(SHORT_FRAMES / 25, abs=0.01)
    assert audio_seconds == pytest.approx(SHORT_SECONDS, abs=0.001)
    assert check_inputs(str(DEMO_VIDEO), str(DEMO_AUDIO), None)[0] == pytest.approx(4.0, abs=0.01)  # no limit
    # a photo (here a PNG named .mp4) is accepted as the face: 0 s of video, the speech sets the length
    assert check_inputs(str(inputs["still"]), str(inputs["audio"]), TEST_MAX_SECONDS)[0] == 0.0


@pytest.mark.parametrize(
    ("video", "audio", "message"),
    [
        (None, "audio", "Please add a face video"),
        ("video", None, "Please add the speech"),
        ("not_media", "audio", "notes.mp4 is not a readable video or audio file"),
        ("audio", "audio", "speech.wav has no video stream"),
        ("fake_photo", "audio", "fake.png is not a"),
        ("video", "video", "face.mp4 has no sound"),
        ("video", "long_audio", "The speech is 1.5 s long, but this app accepts at most 1 s (setting MAX_SECONDS)"),
        (DEMO_VIDEO, "audio", "The video is 4.0 s long, but this app accepts at most 1 s"),
    ],
)
def test_check_inputs_messages(inputs, video, audio, message):
    def path(key):
        return None if key is None else str(inputs.get(key, key))

    with pytest.raises(InputError) as err:
        check_inputs(path(video), path(audio), TEST_MAX_SECONDS)
    assert message in str(err.value)


def test_make_options_converts_ui_values_and_checks_them():
    options = make_options(2.0, 1.5, 12.0, score_sync=True)  # sliders and numbers may send floats
    assert options == LipSyncOptions(steps=2, guidance_scale=1.5, seed=12, score_sync=True)
    assert type(options.steps) is int and type(options.seed) is int
    with pytest.raises(InputError, match="steps must be an integer from 1"):
        make_options(0, 1.5, 12)
    with pytest.raises(InputError, match="Please enter a seed"):
        make_options(20, 1.5, None)  # the seed box emptied
    options = make_options(20, 1.5, 1, False, " 0.3,0.4 ", "freeze", True, 23.0)
    assert (options.speaker, options.length_mode, options.native_fps, options.crf) == ("0.3,0.4", "freeze", True, 23)
    assert options.cache_interval == 3 and make_options(20, 1.5, 1, faster=False).cache_interval == 1
    assert options.whisper_windows == "seamless"
    assert make_options(20, 1.5, 1, seamless_audio_windows=False).whisper_windows == "reference"
    assert make_options(20, 1.5, 1, speaker="").speaker == "largest"  # an emptied box means the default
    with pytest.raises(InputError, match="length_mode must be one of"):
        make_options(20, 1.5, 1, length_mode="bounce")
    assert tuple(app.LENGTH_MODE_LABELS) == LENGTH_MODES  # the radio offers every mode, in the library's order
    with pytest.raises(InputError, match="crf must be an integer"):
        make_options(20, 1.5, 1, crf=18.5)


def test_speaker_picker_shows_the_first_frame_and_marks_the_click(inputs):
    from latentsync.app_support import first_frame, mark_point, speaker_from_click

    frame = first_frame(inputs["video"])
    np.testing.assert_array_equal(frame, media.read_video_frames(inputs["video"], max_frames=1)[0])
    np.testing.assert_array_equal(first_frame(inputs["still"]), media.read_image(inputs["still"]))
    marked = mark_point(frame, 100, 150)
    changed = np.abs(marked.astype(int) - frame).sum(-1) > 0
    ys, xs = np.nonzero(changed)
    assert abs(xs.mean() - 100) < 2 and abs(ys.mean() - 150) < 2 and changed.sum() > 50
    assert not changed[:, :80].any() and not np.array_equal(marked, frame)
    assert (frame == first_frame(inputs["video"])).all()  # the frame itself is not drawn on
    assert speaker_from_click([100.4, 149.6]) == "100,150"


def test_stage_progress_reports_each_stage():
    calls = []
    report = StageProgress(lambda progress, desc, unit: calls.append((progress, desc, unit)))
    events = [("audio features", 0, 1), ("analysing faces", 12, 12), ("lip sync", 0, 2), ("lip sync", 1, 2),
              ("lip sync", 2, 2), ("sync scores", 1, 2), ("done", 1, 1)]  # fmt: skip
    for event in events:
        report(*event)
    assert calls == [
        ((0, 1), "Reading the speech (Whisper audio features)", "steps"),
        ((12, 12), "Finding the face in every frame", "frames"),
        ((0, 2), "Lip sync: diffusion, 16 frames per chunk", "chunks"),
        ((1, 2), "Lip sync: diffusion, 16 frames per chunk", "chunks"),
        ((1, 1), "Encoding the MP4 (H.264 + AAC)", "steps"),
        ((1, 2), "Sync-C scores with SyncNet (input, then output)", "videos"),
        ((1, 1), "Done", "steps"),
    ]
    StageProgress(None)("lip sync", 1, 2)  # API calls without a progress tracker are fine


def test_describe_result_says_what_was_done():
    result = LipSyncResult(output=Path("o.mp4"), num_frames=98, audio_seconds=3.92, source_frames=100,
                           frames_with_face=98, looped=False, seconds=12.34)  # fmt: skip
    options = LipSyncOptions(steps=1, guidance_scale=1.0, seed=3)
    job = LipSyncJob("v.mp4", "a.wav", "o.mp4", "1.6", options, 4.0, 3.92, smoke=True)
    assert describe_result(result, job).splitlines() == [
        "LatentSync 1.6: 98 frames (3.92 s at 25 fps) for 3.92 s of audio; 98 frames lip-synced, video cut to the "
        "audio's length (4.00 s available); took 12.3 s.",
        "Settings: 1 step, guidance 1, seed 3.",
        "Smoke-test mode: tiny random models, so the mouth is NOT lip-synced.",
    ]
    distances = np.zeros(31, np.float32)
    scored = dataclasses.replace(result, sync_before=SyncScore(3, 1.234, 9.5, distances),
                                 sync_after=SyncScore(0, 7.891, 6.25, distances))  # fmt: skip
    lines = describe_result(scored, dataclasses.replace(job, smoke=False)).splitlines()
    assert lines[0].endswith("took 12.3 s.")  # the scores are not repeated in the summary line
    assert lines[2:] == [
        "Sync-C before 1.23 → after 7.89 (higher is better); Sync-D 9.50 → 6.25 (lower is better)."
    ]
    output_only = dataclasses.replace(scored, sync_before=None)  # score_input=False
    assert describe_result(output_only, dataclasses.replace(job, smoke=False)).splitlines()[2:] == [
        "Sync-C 7.89 (higher is better); Sync-D 6.25 (lower is better)."
    ]


def test_pipeline_cache_loads_each_version_once_even_when_asked_concurrently():
    loads = []

    def loader(version, checkpoints_dir=None, sync_scores=False):
        loads.append((version, checkpoints_dir, sync_scores))
        return object()

    cache = PipelineCache(loader)
    got = []
    threads = [threading.Thread(target=lambda v=v: got.append(cache.get(v))) for v in ("1.5", "1.5", "1.6")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(loads) == [("1.5", None, True), ("1.6", None, True)]  # None: the environment or the Hub
    assert len({id(p) for p in got}) == 2
    assert set(cache.loaded) == {("1.5", False, None), ("1.6", False, None)}  # (version, smoke, smoke_faces)
    with pytest.raises(InputError, match="version must be one of 1.5, 1.6, got '2.0'"):
        cache.get("2.0")


def test_pipeline_cache_does_without_syncnet_when_its_weights_are_missing():
    def loader(version, checkpoints_dir=None, sync_scores=False):
        if sync_scores:
            raise CheckpointError("missing model files: auxiliary/syncnet_v2.model")
        return SimpleNamespace(sync_scorer=None)

    cache = PipelineCache(loader)
    assert cache.get("1.5").sync_scorer is None
    job = LipSyncJob("v.mp4", "a.wav", "o.mp4", "1.5", LipSyncOptions(score_sync=True), 1.0, 1.0)
    with pytest.raises(InputError, match=r"Sync-C scores are not available here: .*syncnet_v2\.model"):
        cache.run(job)


def test_steps_slider_range_depends_on_mode():
    def steps_slider(settings):
        demo = app.build_demo(settings)
        return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "steps")

    real, smoke = steps_slider(AppSettings()), steps_slider(AppSettings(smoke=True))
    assert (real.minimum, real.maximum, real.value) == (10, 50, 20)  # the reference app's range
    assert (smoke.minimum, smoke.maximum, smoke.value) == (1, 50, 20)  # quick smoke runs


def test_spaces_gpu_is_a_no_op_off_zerogpu():
    import spaces

    assert not os.environ.get("SPACES_ZERO_GPU")
    assert not hasattr(app.lipsync_on_gpu, "zerogpu")  # the ZeroGPU wrapper marks what it returns

    def f(x):
        return x

    assert spaces.GPU(duration=lambda x: 10)(f) is f


def test_import_app_loads_no_model_and_starts_no_server():
    heavy = ("latentsync.inference.loading", "latentsync.models.unet", "latentsync.tiny")
    code = (
        "import json, sys, app; print(json.dumps({'loaded': list(app.PIPELINES.loaded), "
        f"'running': app.demo.is_running, 'modules': [m for m in {heavy!r} if m in sys.modules]}}))"
    )
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"loaded": [], "running": False, "modules": []}


# ------------------------------------------------------------------------------------------ the served app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(settings: AppSettings) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port) in this process; yields its URL and closes it afterwards."""
    demo = app.build_demo(settings)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                ssr_mode=False, **app.launch_options())  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(AppSettings(max_seconds=TEST_MAX_SECONDS, smoke=True)) as url:
        yield url


def client(url: str, download_dir: Path):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=str(download_dir))


def lipsync_args(video: Path | None, audio: Path | None, **overrides) -> dict:
    from gradio_client import handle_file

    return {
        "video": handle_file(str(video)) if video else None,
        "audio": handle_file(str(audio)) if audio else None,
        **FAST,
        **overrides,
        "api_name": "/lipsync",
    }


def assert_short_output(output: str) -> None:
    info = media.probe(output)
    assert info.num_frames == math.ceil(SHORT_SECONDS * 25) == 8
    assert abs(info.audio_duration - SHORT_SECONDS) <= 0.04


def test_api_lists_one_named_endpoint_with_named_parameters(server, tmp_path):
    api = client(server, tmp_path).view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/lipsync"] and not api["unnamed_endpoints"]
    endpoint = api["named_endpoints"]["/lipsync"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == PARAMETERS
    defaults = {p["parameter_name"]: p["parameter_default"] for p in endpoint["parameters"]
                if p["parameter_has_default"]}  # fmt: skip
    assert defaults == {"version": "1.5", "steps": 20, "guidance_scale": 1.5, "seed": 1247,
                        "randomize_seed": False, "score_sync": False, "speaker": "largest",
                        "length_mode": "pingpong", "native_fps": False, "crf": 18, "photo": None,
                        "faster": True, "seamless_audio_windows": True, "restore": False,
                        "restore_strength": 0.5, "speakers": ""}  # fmt: skip
    assert [r["label"] for r in endpoint["returns"]] == ["Lip-synced video", "What was done", "Seed"]


def test_too_long_input_is_refused_with_the_limit(server, tmp_path, inputs):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"The speech is 1\.5 s long, but this app accepts at most 1 s"):
        client(server, tmp_path).predict(**lipsync_args(inputs["video"], inputs["long_audio"]))


def test_missing_input_is_explained(server, tmp_path, inputs):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Please add a face video"):
        client(server, tmp_path).predict(**lipsync_args(None, inputs["audio"]))


@pytest.mark.slow
def test_lipsync_returns_the_video_and_leaves_nothing_behind(server, tmp_path, inputs, monkeypatch):
    app.PIPELINES.get("1.5", smoke=True)  # loaded once per process (its tiny checkpoints live as long)
    scratch = tmp_path / "tmp"  # every temporary folder of the request (app's, pipeline's) lands here
    scratch.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", app.gr.utils.get_upload_folder())  # gradio's cache stays put
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    request = lipsync_args(inputs["video"], inputs["audio"], score_sync=True)
    video, text, seed = client(server, tmp_path / "downloads").predict(**request)
    assert_short_output(video)
    lines = text.splitlines()
    assert lines[0].startswith("LatentSync 1.5: 8 frames (0.32 s at 25 fps) for 0.30 s of audio; 8 frames")
    assert lines[1] == "Settings: 1 step, guidance 1, seed 7."
    assert re.fullmatch(r"Sync-C before -?\d+\.\d\d → after -?\d+\.\d\d \(higher is better\); Sync-D .*",
                        lines[2])  # fmt: skip
    assert lines[3] == "Smoke-test mode: tiny random models, so the mouth is NOT lip-synced."
    assert seed == 7
    # gradio_client (in this process) downloads through an empty staging folder that it leaves behind
    client_staging = [p for p in scratch.iterdir() if re.fullmatch("[0-9a-f]{40}", p.name)
                      and not any(p.iterdir())]  # fmt: skip
    assert [str(p.relative_to(scratch)) for p in scratch.rglob("*") if p not in client_staging] == []


@pytest.mark.slow
def test_old_positional_clients_and_the_new_options(server, tmp_path, inputs):
    from gradio_client import handle_file

    app.PIPELINES.get("1.5", smoke=True)
    api = client(server, tmp_path / "downloads")
    # a client written before the new parameters: eight positional values, as the README showed
    video, text, seed = api.predict(handle_file(str(inputs["video"])), handle_file(str(inputs["audio"])), "1.5", 1,
                                    1.0, 7, False, False, api_name="/lipsync")  # fmt: skip
    assert_short_output(video)
    assert text.splitlines()[1] == "Settings: 1 step, guidance 1, seed 7." and seed == 7
    # a photo through the new parameter, with a speaker point and another length mode and quality
    request = lipsync_args(None, inputs["audio"], photo=handle_file(str(inputs["still"])), speaker="0.5,0.5",
                           length_mode="freeze", crf=23)  # fmt: skip
    video, text, _ = api.predict(**request)
    assert_short_output(video)
    assert "the photo held for the whole speech" in text
    assert "speaker at 0.5,0.5, length mode freeze, CRF 23." in text


@pytest.mark.slow
def test_no_face_error_reaches_the_client(server, tmp_path, inputs):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client(server, tmp_path).predict(**lipsync_args(inputs["grey"], inputs["audio"]))
    assert re.match(r"No face was found in any of the \d+ frames of the video", str(err.value))


@pytest.mark.slow
def test_two_concurrent_clients_both_succeed(server, tmp_path, inputs):
    jobs = [
        client(server, tmp_path / f"client{i}").submit(
            **lipsync_args(inputs["video"], inputs["audio"], seed=i, randomize_seed=bool(i))
        )
        for i in range(2)
    ]
    results = [job.result(timeout=300) for job in jobs]
    for video, _, _ in results:
        assert_short_output(video)
    assert results[0][2] == 0  # the seed given
    assert f"seed {results[1][2]}." in results[1][1]  # a drawn seed, reported in the text and the seed box
