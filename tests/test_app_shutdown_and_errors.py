"""The app's error messages (no server paths, addresses or tool output), its seed box, and SIGTERM clean-up."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import gradio as gr
import pytest

import app
from latentsync.app_support import AppSettings, PipelineCache, check_inputs

from .conftest import DEMO_AUDIO, REPO_ROOT

SMOKE_PREFIX = "latentsync-smoke-checkpoints-"


def test_unreadable_upload_message_names_the_file_in_plain_words(tmp_path):
    upload_dir = tmp_path / "gradio" / "4f2a9c0d1e"  # gradio's upload folders look like this, on the server
    upload_dir.mkdir(parents=True)
    junk = upload_dir / "not_media.mp4"
    junk.write_text("this is a text file, not a video\n" * 20)
    with pytest.raises(gr.Error) as err:
        with app.shown_to_user():
            check_inputs(str(junk), str(DEMO_AUDIO), None)
    message = err.value.message
    assert message.startswith("not_media.mp4 is not a readable video or audio file")  # not "Not_media.mp4"
    assert str(tmp_path) not in message and "/" not in message
    assert not re.search(r"@ 0x[0-9a-f]+", message) and "ffprobe" not in message and "Invalid data" not in message


def test_messages_starting_with_a_word_are_capitalised_and_file_names_are_not():
    assert app._sentence("no face was found") == "No face was found"
    assert app._sentence("steps must be an integer") == "Steps must be an integer"
    assert app._sentence("not_media.mp4 is not readable") == "not_media.mp4 is not readable"
    assert app._sentence("clip.MOV has no sound") == "clip.MOV has no sound"


def test_seed_box_shows_no_progress_or_error_badge():
    demo = app.build_demo(AppSettings(smoke=True))
    config = demo.get_config_file()
    (event,) = [d for d in config["dependencies"] if d.get("api_name") == "lipsync"]
    video_out, summary, seed = event["outputs"]
    assert event["show_progress_on"] == [video_out, summary]
    assert seed not in event["show_progress_on"]


def test_pipeline_cache_close_removes_the_smoke_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    cache = PipelineCache()
    folder = cache._smoke_checkpoints()
    assert folder.parent == tmp_path and any(folder.iterdir())
    cache.close()
    assert not folder.exists()
    cache.close()  # twice is fine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_removes_the_smoke_checkpoints_folder(tmp_path):
    """A real `app.main(["--smoke"])` serving on a free port, stopped with SIGTERM like `docker stop` does."""
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    # The folder is written by the first request; write it first here, then serve as `python app.py --smoke`.
    code = "import app; app.PIPELINES._smoke_checkpoints(); app.main(['--smoke'])"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # serving: the port accepts connections
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the app did not start serving within 180 s")
        (folder,) = tmp_path.glob(SMOKE_PREFIX + "*")
        assert any(folder.iterdir())
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not folder.exists(), proc.stdout.read().decode(errors="replace")
    assert list(tmp_path.glob(SMOKE_PREFIX + "*")) == []
