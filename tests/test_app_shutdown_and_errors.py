"""The app's error messages (no server paths, addresses or tool output), its seed box, SIGTERM clean-up (smoke
checkpoints and served results), and what keeps a long-running server's memory flat."""

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
from latentsync.app_support import AppSettings, PipelineCache, ServedResults, check_inputs

from .conftest import DEMO_AUDIO, REPO_ROOT
from .test_app import inputs, private_face_cache  # noqa: F401 -- fixtures shared

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


def test_messages_are_sentences_and_name_the_parameter():
    assert app._sentence("no face was found") == "No face was found."
    assert app._sentence("steps must be an integer") == "The parameter steps must be an integer."
    assert app._sentence("not_media.mp4 is not readable.") == "not_media.mp4 is not readable."  # a file name as given
    assert app._sentence("clip.MOV has no sound") == "clip.MOV has no sound."
    assert app._sentence("Please check it!") == "Please check it!"
    # the speaker messages (latentsync.inference.input_checks) start with "speaker:" and end without a full stop
    message = app._sentence("speaker: the point (2, 3) lies outside the 64x64 frame (x must be below 64)")
    assert message == "Speaker: the point (2, 3) lies outside the 64x64 frame (x must be below 64)."


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


def test_served_results_are_removed_with_their_folders(tmp_path):
    served = ServedResults(prune_at=3)
    paths = []
    for i in range(3):
        folder = tmp_path / f"hash{i}"
        folder.mkdir()
        (folder / "lipsync.mp4").write_bytes(b"x" * 10)
        paths.append(served.add(folder / "lipsync.mp4"))
    assert paths[0] == str(tmp_path / "hash0" / "lipsync.mp4")
    (tmp_path / "hash1" / "upload.wav").write_bytes(b"y")  # another file there: the folder stays
    (tmp_path / "hash2" / "lipsync.mp4").unlink()  # swept by gradio already: its empty folder still goes
    assert served.remove_all() == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["hash1", "hash1/upload.wav"]
    assert len(served) == 0 and served.remove_all() == 0


def test_served_results_forget_files_the_sweep_removed(tmp_path):
    served = ServedResults(prune_at=4)
    for i in range(4):
        (tmp_path / f"{i}.mp4").write_bytes(b"x")
        served.add(tmp_path / f"{i}.mp4")
    for i in range(3):
        (tmp_path / f"{i}.mp4").unlink()  # the hourly sweep
    served.add(tmp_path / "3.mp4")  # at the limit: the missing ones are dropped
    assert len(served) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="mallopt and malloc_trim are glibc's")
def test_malloc_arenas_capped_and_freed_heap_handed_back_to_the_os():
    """In a fresh process: arenas are capped unless the operator chose; freed small blocks stay in glibc's heap (RSS
    does not fall) until release_memory's malloc_trim hands the pages back."""
    code = """
import gc, re
from latentsync.app_support import limit_malloc_arenas, release_memory
print(limit_malloc_arenas(), limit_malloc_arenas(environ={"MALLOC_ARENA_MAX": "4"}))
def rss(): return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024
gc.disable()
before = rss()
blocks = [bytearray(1000) for _ in range(200_000)]  # ~200 MB of small mallocs (above pymalloc's 512 bytes)
keep = blocks[-1]  # the heap's top block stays in use, so free() cannot shrink the heap from the top
del blocks[-1]
del blocks
freed = rss()
release_memory()
print(before, freed, rss())
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    capped, operator_chose, before, freed, released = out.stdout.split()
    assert (capped, operator_chose) == ("True", "False")
    assert int(freed) - int(before) > 150  # MB still held after the blocks were freed
    assert int(released) - int(before) < 50  # handed back


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_removes_the_smoke_checkpoints_and_the_served_results(tmp_path, inputs):  # noqa: F811
    """A real `app.main(["--smoke"])` serving on a free port, one call, then SIGTERM like `docker stop` sends."""
    from gradio_client import Client, handle_file

    port = _free_port()
    gradio_dir = tmp_path / "gradio"
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(gradio_dir),
           "LATENTSYNC_CACHE_DIR": str(tmp_path / "face-tracks")}  # fmt: skip
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
        api = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                     download_files=str(tmp_path / "downloads"))  # fmt: skip
        api.predict(video=handle_file(str(inputs["video"])), audio=handle_file(str(inputs["audio"])), steps=1,
                    guidance_scale=1.0, api_name="/lipsync")  # fmt: skip
        (result,) = gradio_dir.rglob("lipsync.mp4")  # served from gradio's cache
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not folder.exists(), proc.stdout.read().decode(errors="replace")
    assert list(tmp_path.glob(SMOKE_PREFIX + "*")) == []
    assert not result.exists() and not result.parent.exists()  # the result and the folder gradio made for it
