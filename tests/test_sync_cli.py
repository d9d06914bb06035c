"""``python -m latentsync.sync`` on real media with random-weight SyncNet files in the official format."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from latentsync import media
from latentsync.sync.cli import EXIT_FAILURE, EXIT_INPUT, EXIT_OK, main

from .conftest import DEMO_AUDIO, DEMO_VIDEO, REPO_ROOT


@pytest.fixture(scope="module")
def talking_clip(tmp_path_factory):
    """30 demo frames with 1.2 s of the demo speech muxed in as the clip's own soundtrack."""
    path = tmp_path_factory.mktemp("sync") / "talk.mp4"
    audio = media.load_audio(DEMO_AUDIO)[: int(1.2 * media.SAMPLE_RATE)]
    return media.write_video(path, [media.read_video_frames(DEMO_VIDEO)[:30]], audio=audio)


def test_text_and_json_output(talking_clip, tiny_checkpoints, capsys):
    assert main(["--video", str(talking_clip), "--checkpoints", str(tiny_checkpoints), "--device", "cpu"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["offset", "Sync-C", "Sync-D"]
    assert main(["--video", str(talking_clip), "--audio", str(DEMO_AUDIO), "--json",
                 "--checkpoints", str(tiny_checkpoints), "--device", "cpu"]) == EXIT_OK  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"offset", "sync_c", "sync_d"}
    assert -15 <= result["offset"] <= 15 and result["sync_d"] > 0 and result["sync_c"] >= 0


def test_video_without_audio_needs_audio(tiny_checkpoints, capsys):
    assert main(["--video", str(DEMO_VIDEO), "--checkpoints", str(tiny_checkpoints)]) == EXIT_INPUT
    assert "no audio track" in capsys.readouterr().err


def test_no_face_is_exit_2(tmp_path, tiny_checkpoints, capsys):
    grey = media.write_video(tmp_path / "g.mp4", [np.full((20, 64, 64, 3), 128, np.uint8)])
    assert main(["--video", str(grey), "--audio", str(DEMO_AUDIO), "--checkpoints", str(tiny_checkpoints)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "no face was found" in err
    assert "lip sync" not in err.lower() and "lip-sync" not in err.lower()  # this tool only measures sync


def test_unreadable_video_is_named_in_plain_words(tmp_path, tiny_checkpoints, capsys):
    junk = tmp_path / "uploads" / "not_media.mp4"
    junk.parent.mkdir()
    junk.write_text("this is a text file, not a video\n" * 20)
    assert main(["--video", str(junk), "--audio", str(DEMO_AUDIO), "--checkpoints", str(tiny_checkpoints)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "not_media.mp4 is not a readable video or audio file" in err
    assert str(tmp_path) not in err and not re.search(r"@ 0x[0-9a-f]+", err)
    assert "ffprobe" not in err and "Invalid data" not in err and "Traceback" not in err
    missing = tmp_path / "elsewhere" / "gone.mp4"
    assert main(["--video", str(missing), "--checkpoints", str(tiny_checkpoints)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "gone.mp4" in err and str(tmp_path) not in err


def test_missing_weights_is_exit_1(tmp_path, talking_clip, capsys):
    assert main(["--video", str(talking_clip), "--checkpoints", str(tmp_path)]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "syncnet_v2.model" in err and "s3fd-619a316812.pth" in err  # everything missing, in one message


def test_module_entry_point_help():
    proc = subprocess.run([sys.executable, "-m", "latentsync.sync", "--help"], capture_output=True, text=True,
                          cwd=REPO_ROOT)  # fmt: skip
    assert proc.returncode == 0 and "--video" in proc.stdout and "--json" in proc.stdout


def test_bad_device_is_exit_2_before_loading(tmp_path, talking_clip, capsys):
    assert main(["--video", str(talking_clip), "--checkpoints", str(tmp_path), "--device", "foo"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "unknown device 'foo'" in err and "syncnet_v2.model" not in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["no video stream", "no audio track"])
def test_bad_input_is_reported_before_missing_weights(tmp_path, capsys, case):
    video = DEMO_AUDIO if case == "no video stream" else DEMO_VIDEO  # the demo video is silent
    assert main(["--video", str(video), "--checkpoints", str(tmp_path), "--device", "cpu"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert case in err and "syncnet_v2.model" not in err and "Traceback" not in err


def test_sigterm_while_scoring_exits_143_and_restores_the_handlers(talking_clip, tiny_checkpoints, capsys, monkeypatch):
    import latentsync.sync.cli as sync_cli

    def scored_until_terminated(*args):  # fault injection: the signal arrives in the middle of the scoring
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises at the next bytecode, long before this ends
        raise AssertionError("SIGTERM did not interrupt the scoring")

    received = []

    def safety_net(signum, frame):  # keeps pytest alive if the CLI installed no handler
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, safety_net)
    try:
        monkeypatch.setattr(sync_cli, "score_file", scored_until_terminated)
        code = main(["--video", str(talking_clip), "--checkpoints", str(tiny_checkpoints), "--device", "cpu"])
        net = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert code == 143 and received == []  # the CLI's handler caught it, not the safety net
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert net is safety_net  # and it put the previous handler back afterwards
