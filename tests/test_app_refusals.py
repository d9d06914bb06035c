"""Every refusal of the ``/lipsync`` API is a sentence that names what to fix, on every client (issue 29, §3).

Against a smoke-mode app served in this process: gradio's raw HTTP API (values refused before the endpoint runs:
ranges, choices, too few values, a file that was not uploaded), ``gradio_client``, and the the documented curl sequence
itself (extracted from docs/app.md, run with curl, the values filled in from each answer).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # set before gradio is imported: no calls home

import pytest

import app
from latentsync import media
from latentsync.app_support import AppSettings

from .conftest import REPO_ROOT
from .test_app import SHORT_SECONDS, inputs, private_face_cache, serve  # noqa: F401 -- fixtures shared

FILE = {"meta": {"_type": "gradio.FileData"}}
# The 16 values of a valid call after the two files (docs/app.md's values, one fast step in smoke mode).
VALUES = ["1.5", 1, 1.0, 7, False, False, "largest", "pingpong", False, 18, None, True, True, False, 0.5, ""]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(AppSettings(max_seconds=60.0, smoke=True)) as url:
        yield url


def upload(url: str, *paths: Path) -> list[str]:
    import httpx

    files = [("files", (path.name, path.read_bytes())) for path in paths]
    return httpx.post(url + "gradio_api/upload", files=files, timeout=60).json()


def call(url: str, data: list) -> tuple[str, object]:
    """POST a raw call and read its stream: (the last event's name, its data decoded)."""
    import httpx

    started = httpx.post(url + "gradio_api/call/lipsync", json={"data": data}, timeout=60)
    started.raise_for_status()
    stream = httpx.get(url + f"gradio_api/call/lipsync/{started.json()['event_id']}", timeout=300).text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, flags=re.MULTILINE)
    assert events, stream
    name, data = events[-1]
    return name, json.loads(data)


@pytest.fixture(scope="module")
def uploaded(server, inputs) -> list[dict]:  # noqa: F811
    return [{"path": path, **FILE} for path in upload(server, inputs["video"], inputs["audio"])]


def with_value(uploaded: list[dict], index: int, value) -> list:
    data = [*uploaded, *VALUES]
    data[index] = value
    return data


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (3, 0, "The parameter steps must be a whole number from 1 to 50, got 0."),
        (3, 2.5, "The parameter steps must be a whole number from 1 to 50, got 2.5."),
        (4, 5, "The parameter guidance_scale must be a number from 1 to 3, got 5."),
        (5, -1, "The parameter seed must be a whole number from 0 to 4294967295, got -1."),
        (2, "2.0", "The parameter version must be one of '1.5', '1.6', got '2.0'."),
        (9, "bounce", "The parameter length_mode must be one of 'pingpong', 'loop', 'freeze', 'video', got 'bounce'."),
        (11, "x", "The parameter crf must be a whole number from 0 to 35, got 'x'."),
        (6, "yes", "The parameter randomize_seed must be true or false, got 'yes'."),
        (8, 3, "The parameter speaker must be a string, got 3."),
        (8, "nose", "The parameter speaker must be 'largest' or a point 'x,y' on the speaker's face"),
        (17, 3, ("The parameter speakers must be a string: '' (one face), 'auto' or a timeline of turns (CSV or "
                 "JSON text), got 3.")),
        (17, "turns.csv", "Speakers: timeline row 1: expected 3 columns start, end, speaker"),
        (17, "start,end,speaker\n2,1,0", "Speakers: timeline row 1: end (1 s) must be after start (2 s)."),
        (17, '[{"start": 0, "end": 1}]', "Speakers: timeline row 1: missing speaker"),
    ],
)
def test_each_bad_value_is_refused_with_its_parameter_and_allowed_values(server, uploaded, index, value, message):
    event, data = call(server, with_value(uploaded, index, value))
    assert event == "error"
    assert data["error"].startswith(message)
    assert data["error"].endswith(".")


def test_too_few_values_name_the_missing_parameters(server, uploaded):
    event, data = call(server, [*uploaded, *VALUES[:6]])  # the eight values the README used to send
    assert event == "error"
    assert data["error"] == (
        "This endpoint takes 18 values in this order: video, audio, version, steps, guidance_scale, seed, "
        "randomize_seed, score_sync, speaker, length_mode, native_fps, crf, photo, faster, seamless_audio_windows, "
        "restore, restore_strength, speakers; got 8, so speaker, length_mode, native_fps, crf, photo, faster, "
        "seamless_audio_windows, restore, restore_strength, speakers are missing. Send all 18 (or use "
        "gradio_client, which fills in the defaults)."
    )
    # a client written for the 17 values before speakers was appended: told the one value to add (docs/app.md)
    event, data = call(server, [*uploaded, *VALUES[:-1]])
    assert event == "error"
    assert data["error"].endswith("got 17, so speakers is missing. Send all 18 (or use gradio_client, which fills "
                                  "in the defaults).")  # fmt: skip


def test_a_file_that_was_not_uploaded_is_refused_in_a_sentence_and_one_log_line(server, uploaded, caplog, capfd):
    caplog.set_level(logging.INFO, logger="latentsync.app")
    for path in ("/etc/passwd", str(REPO_ROOT / "assets" / "demo_video.mp4")):
        event, data = call(server, [{"path": path, **FILE}, *uploaded[1:], *VALUES])
        assert event == "error"
        assert data["error"] == app.NOT_UPLOADED
    refusals = [r for r in caplog.records if r.name == "latentsync.app" and r.getMessage().startswith("refused")]
    assert len(refusals) == 2 and all("\n" not in r.getMessage() for r in refusals)
    assert "Traceback" not in capfd.readouterr().err


def test_gradio_client_gets_the_same_sentence(server, inputs, tmp_path):  # noqa: F811
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False, analytics_enabled=False, download_files=str(tmp_path))
    with pytest.raises(AppError, match=r"^The parameter steps must be a whole number from 1 to 50, got 0\.$"):
        client.predict(video=handle_file(str(inputs["video"])), audio=handle_file(str(inputs["audio"])), steps=0,
                       api_name="/lipsync")  # fmt: skip


# ------------------------------------------------------------------------------------------ the documented curl sequence


def documented_curl_block() -> list[str]:
    """The commands of docs/app.md's curl block (a command's continuation lines joined to it; comments dropped)."""
    text = (REPO_ROOT / "docs" / "app.md").read_text()
    section = text[text.index("## API\n") :]
    block = re.search(r"With curl.*?```bash\n(.*?)```", section, flags=re.DOTALL).group(1)
    commands: list[str] = []
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith(("URL=", "curl ")):
            commands.append(line)
        else:  # inside a quoted argument that spans lines
            commands[-1] += "\n" + line
    return commands


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_documented_curl_sequence_runs_against_the_app(server, inputs, tmp_path):  # noqa: F811
    commands = documented_curl_block()
    assert [c.split()[0].split("=")[0] for c in commands] == ["URL", "curl", "curl", "curl", "curl"]
    # The short clip instead of the demo files (the README's other values as written: 20 steps, guidance 1.5).
    shutil.copy(inputs["video"], tmp_path / "demo_video.mp4")
    shutil.copy(inputs["audio"], tmp_path / "demo_speech.wav")
    filled = {"URL": server.rstrip("/")}

    def run(command: str) -> str:
        for placeholder, value in filled.items():
            command = command.replace(f"<{placeholder}>", value)
        command = command.replace("assets/", "").replace("$URL", filled["URL"])
        assert "<" not in command, f"a placeholder was not filled: {command}"
        args = shlex.split(command)
        proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=True)
        return proc.stdout

    assert commands[0] == "URL=http://127.0.0.1:7860"
    filled["video path"], filled["audio path"] = json.loads(run(commands[1]))
    filled["id"] = json.loads(run(commands[2]))["event_id"]
    stream = run(commands[3])
    event, data = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, flags=re.MULTILINE)[-1]
    assert event == "complete", stream
    video, summary, seed = json.loads(data)
    assert seed == 1247 and summary.splitlines()[1] == "Settings: 20 steps, guidance 1.5, seed 1247."
    filled["video URL"] = video["url"]
    assert run(commands[4]) == ""
    info = media.probe(tmp_path / "lipsync.mp4")
    assert info.num_frames == math.ceil(SHORT_SECONDS * media.VIDEO_FPS) == 8


def test_the_value_check_knows_every_parameter_of_the_endpoint():
    """The refusal sentences list the endpoint's parameters from app.API_PARAMETERS: it must be the endpoint's own
    list (a parameter appended to /lipsync and not here would make a valid 18-value call "too few")."""
    from .test_app import PARAMETERS

    assert app.API_PARAMETERS == PARAMETERS
