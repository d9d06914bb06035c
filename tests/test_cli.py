"""The command line: help, exit codes 0/1/2 and readable messages instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from latentsync import media
from latentsync.cli import EXIT_FAILURE, EXIT_INPUT, EXIT_OK, main

from .conftest import DEMO_AUDIO, DEMO_VIDEO, REPO_ROOT


def test_help_documents_every_option():
    proc = subprocess.run([sys.executable, "-m", "latentsync", "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0
    for option in ("--video", "--audio", "--output", "--version", "--steps", "--guidance", "--seed", "--device",
                   "--dtype", "--checkpoints"):  # fmt: skip
        assert option in proc.stdout
    assert "Exit codes" in proc.stdout


def test_missing_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--video", str(DEMO_VIDEO)])
    assert err.value.code == EXIT_INPUT
    assert "--audio" in capsys.readouterr().err


def test_missing_file_exits_2_with_a_message(tmp_path, capsys):
    code = main(["--video", str(tmp_path / "none.mp4"), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4")])
    assert code == EXIT_INPUT
    err = capsys.readouterr().err
    assert "file not found" in err and "Traceback" not in err


def test_bad_option_value_exits_2(tmp_path, capsys):
    code = main(["--video", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
                 "--steps", "0"])  # fmt: skip
    assert code == EXIT_INPUT and "steps must be" in capsys.readouterr().err


def test_missing_weights_exit_1_naming_the_problem(tmp_path, capsys):
    code = main(["--video", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
                 "--checkpoints", str(tmp_path)])  # fmt: skip
    assert code == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "latentsync_unet.pt" in err and "Traceback" not in err


def test_no_face_exits_2(tmp_path, tiny_checkpoints, capsys):
    video = media.write_video(tmp_path / "grey.mp4", [np.full((8, 64, 64, 3), 128, np.uint8)])
    code = main(["--video", str(video), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
                 "--checkpoints", str(tiny_checkpoints), "--device", "cpu"])  # fmt: skip
    assert code == EXIT_INPUT
    assert "face" in capsys.readouterr().err.lower()
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_success_writes_the_video(tmp_path, tiny_checkpoints, capsys):
    video = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(DEMO_VIDEO), "-frames:v", "10", str(video)], check=True)
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: int(0.3 * media.SAMPLE_RATE)])
    out = tmp_path / "o.mp4"
    code = main(["--video", str(video), "--audio", str(audio), "--output", str(out), "--steps", "1",
                 "--guidance", "1.0", "--checkpoints", str(tiny_checkpoints), "--device", "cpu"])  # fmt: skip
    assert code == EXIT_OK
    assert media.probe(out).num_frames == 8  # ceil(0.3 s x 25)
    assert f"wrote {out}" in capsys.readouterr().out
