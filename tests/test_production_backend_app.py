"""The app's ``/lipsync`` on the production face backend: the twin of test_app.py's served smoke-mode run
(dlib), with ``smoke_faces="face_alignment"`` (``--smoke-faces face_alignment``, ``LATENTSYNC_SMOKE_FACES``):
smoke mode's tiny checkpoints then carry face-alignment's SFD and 2D-FAN-4 with random weights in the Hub's
formats.

The random detector reports a face per 128 px anchor and the landmarks are random, so this asserts what does
not depend on where they fall: the output's frames and audio, the summary's length line, the seed, no
error; and for a conversation (``speakers``, every face tracked), a result or a clear sentence, never an internal
error."""

from __future__ import annotations

import os
import re
import subprocess

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # set before gradio is imported: no calls home

import pytest
from gradio_client.exceptions import AppError

import app
from latentsync.app_support import AppSettings, PipelineCache

from .conftest import DEMO_VIDEO
from .test_app import (
    SHORT_SECONDS,
    TEST_MAX_SECONDS,
    assert_short_output,
    client,
    lipsync_args,
    serve,
    speech,
)

SIDE = 128  # px: one anchor of the random detector, so one landmark pass per frame
FRAMES = 12  # as test_app's face video


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("app-fa-inputs")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-frames:v",
                    str(FRAMES), "-vf", f"scale={SIDE}:{SIDE}", "-an", str(folder / "face.mp4")],
                   check=True)  # fmt: skip
    return {"video": folder / "face.mp4", "audio": speech(folder / "speech.wav", SHORT_SECONDS)}


def test_smoke_faces_setting_is_read_checked_and_kept_apart():
    assert AppSettings.from_env({}).smoke_faces == "dlib"
    env = {"LATENTSYNC_SMOKE_FACES": "face_alignment"}
    assert AppSettings.from_env(env).smoke_faces == "face_alignment"
    flag_wins = AppSettings.from_env({"LATENTSYNC_SMOKE_FACES": "dlib"}, smoke_faces="face_alignment")
    assert flag_wins.smoke_faces == "face_alignment"  # app.py's --smoke-faces
    with pytest.raises(ValueError, match="SMOKE_FACES must be one of dlib, face_alignment, got 'sfd'"):
        AppSettings.from_env({"LATENTSYNC_SMOKE_FACES": "sfd"})
    loads = []

    def loader(version, checkpoints_dir=None, sync_scores=False):
        loads.append(version)
        return object()

    cache = PipelineCache(loader)
    cache._smoke_checkpoints = lambda faces="dlib": faces  # the folder's name stands for the folder here
    first = cache.get("1.5", smoke=True)
    assert cache.get("1.5", smoke=True, smoke_faces="face_alignment") is not first  # its own tiny checkpoints
    assert cache.get("1.5", smoke=True, smoke_faces="dlib") is first and len(loads) == 2
    assert cache.loaded == (("1.5", True, "dlib"), ("1.5", True, "face_alignment"))
    with pytest.raises(ValueError, match="smoke_faces must be one of dlib, face_alignment, got 'sfd'"):
        cache.get("1.5", smoke=True, smoke_faces="sfd")
    page = app.build_demo(AppSettings(smoke=True, smoke_faces="face_alignment"))
    (banner,) = [b for b in page.blocks.values() if getattr(b, "elem_id", None) == "smoke-banner"]
    assert "NOT lip-synced" in banner.value and "face-alignment" in banner.value  # the page says which faces


@pytest.mark.slow
def test_lipsync_on_face_alignment_returns_the_video(inputs, tmp_path, monkeypatch):
    # Uploads go to a private folder: gradio names them by content in a folder shared by every process
    # (/tmp/gradio), and a concurrent test session's server deletes its same-content uploads there on closing.
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    settings = AppSettings(max_seconds=TEST_MAX_SECONDS, smoke=True, smoke_faces="face_alignment")
    try:
        with serve(settings) as url:
            request = lipsync_args(inputs["video"], inputs["audio"], score_sync=True)
            api = client(url, tmp_path / "downloads")
            video, text, seed = api.predict(**request)
            conversation = conversation_call(api, inputs)
        folder = app.PIPELINES._smoke_checkpoints("face_alignment")  # written by the request, not here
        assert (folder / "auxiliary" / "s3fd-619a316812.pth").is_file()
        assert '"face_backend": "face_alignment"' in (folder / "latentsync_config.json").read_text()
    finally:
        app.PIPELINES.close()  # the face-alignment smoke folder is 250 MB: gone now, not at the session's end
    assert_short_output(video)
    lines = text.splitlines()
    assert lines[0].startswith("LatentSync 1.5: 8 frames (0.32 s at 25 fps) for 0.30 s of audio;")
    assert lines[1] == "Settings: 1 step, guidance 1, seed 7." and seed == 7
    assert lines[-1] == "Smoke-test mode: tiny random models, so the mouth is NOT lip-synced."
    # the conversation: face 0 speaks throughout, whatever the random detector made of the frames
    if isinstance(conversation, AppError):
        message = str(conversation)
        assert not message.startswith("The upstream Gradio app has raised an exception"), message  # not a gr.Error
        assert message.endswith(".") and "Traceback" not in message, message
        assert re.search(r"speakers|timeline|face", message, re.IGNORECASE), message
    else:
        video, text, _ = conversation
        assert_short_output(video)
        assert "Speaker turns from the timeline: 0.00-0.32 s face 0." in text.splitlines(), text


def conversation_call(api, inputs):
    """/lipsync with a one-turn timeline: its (video, summary, seed), or the AppError it was refused with."""
    try:
        return api.predict(**lipsync_args(inputs["video"], inputs["audio"], speakers="0,0.32,0"))
    except AppError as err:
        return err
